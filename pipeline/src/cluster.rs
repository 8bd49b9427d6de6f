//! Batch-system recipes for a sharded run, as DataTrove's Slurm executor gives them: a job per
//! phase of the DAG ([`PHASES`]), each started only when the one before succeeded; a sharded phase
//! is an array of `shards` tasks, a merge phase one task. Each task takes its shard from its batch system's environment
//! (`Shard::from_env`); a task that fails is retried (Slurm: requeued by its own script; Kubernetes:
//! `backoffLimitPerIndex`), and a retried task finds its committed stages and parts and goes on
//! from there.
//!
//! - [`slurm`]: `01-queries.sbatch` … `05-per-query.sbatch` and `submit.sh` (chained with
//!   `--dependency=afterok`);
//! - [`k8s`]: a ConfigMap with the config and a Job per phase (Indexed when sharded), as JSON
//!   manifests `kubectl apply -f` reads (JSON is YAML, and needs no new crate), and `apply.sh`.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::Error;
use crate::stages::{PHASES, Phase};

/// What a recipe runs: this binary, on this config, from this directory.
#[derive(Debug, Clone)]
pub struct Plan {
    pub binary: PathBuf,
    pub config: PathBuf,
    pub workdir: PathBuf,
    pub shards: u32,
    /// Attempts after the first, per task.
    pub retries: u32,
}

impl Plan {
    pub fn new(config: &Path, shards: u32, retries: u32) -> Result<Self, Error> {
        if shards == 0 {
            return Err(Error::Usage("--shards must be at least 1".into()));
        }
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
        Ok(Self {
            binary: std::env::current_exe().map_err(|e| Error::io(Path::new("lrem-pipeline"), e))?,
            config: absolute(config)?,
            workdir: absolute(Path::new("."))?,
            shards,
            retries,
        })
    }
}

/// A file of a recipe: its name and text.
pub type File = (String, String);

/// Slurm options beyond the plan.
#[derive(Debug, Clone, Default)]
pub struct Slurm {
    pub partition: Option<String>,
    /// Where the jobs' logs go.
    pub logs: PathBuf,
}

/// The arguments of `lrem-pipeline run` for one phase.
fn phase_args(phase: &Phase) -> Vec<&'static str> {
    let mut args = Vec::new();
    if let Some(until) = phase.until {
        args.extend(["--until", until]);
    }
    if !phase.sharded {
        args.extend(["--shard", "none"]);
    }
    args
}

/// [`phase_args`] with the shard named in full: `sbatch --array=3 05-per-query.sbatch` reruns
/// shard 3 of the run's count, where the array's own count would make it shard 0 of 1.
fn slurm_args(phase: &Phase, shards: u32) -> String {
    let mut args = phase_args(phase).join(" ");
    if phase.sharded {
        args.push_str(&format!(" --shard \"$SLURM_ARRAY_TASK_ID/{shards}\""));
    }
    args
}

/// The name of phase `i`'s file (`01-queries`, …).
fn phase_file(i: usize, phase: &Phase) -> String {
    format!("{:02}-{}", i + 1, phase.name)
}

/// The Slurm recipe: a batch script per phase ([`PHASES`]; an array of `shards` tasks for a
/// sharded one) and the script that submits them, each after the one before succeeded.
pub fn slurm(plan: &Plan, options: &Slurm) -> Vec<File> {
    let mut files = Vec::new();
    let mut submit = String::from(
        "#!/bin/bash\n\
         # Submits the phases in order, each once the one before succeeded; prints their job ids.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n",
    );
    submit.push_str(&format!("mkdir -p {}\nprevious=\nids=\n", quote(&options.logs)));
    for (i, phase) in PHASES.iter().enumerate() {
        let name = phase_file(i, phase);
        let mut script = format!(
            "#!/bin/bash\n#SBATCH --job-name=lrem-{}\n#SBATCH --output={}/{}\n#SBATCH --open-mode=append\n\
             #SBATCH --chdir={}\n#SBATCH --requeue\n",
            phase.name,
            options.logs.display(),
            if phase.sharded { format!("{}-%A_%a.log", phase.name) } else { format!("{}-%j.log", phase.name) },
            plan.workdir.display()
        );
        if let Some(p) = &options.partition {
            script.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        if phase.sharded {
            script.push_str(&format!("#SBATCH --array=0-{}\n", plan.shards - 1));
        }
        // A phase that failed for good cancels the ones after it instead of leaving them pending.
        script.push_str("#SBATCH --kill-on-invalid-dep=yes\n");
        script.push_str(&format!(
            "set -uo pipefail\n\
             {bin} run --config {config} --quiet --log-json {args} && exit 0\n\
             status=$?\n\
             # A failed attempt requeues itself while it has retries left; the next attempt goes on\n\
             # from what this one committed.\n\
             if (( ${{SLURM_RESTART_COUNT:-0}} < {retries} )); then\n\
             \x20   echo \"lrem: attempt ${{SLURM_RESTART_COUNT:-0}} exited $status; requeueing\" >&2\n\
             \x20   scontrol requeue \"${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}${{SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}}\"\n\
             \x20   sleep 60  # the requeue ends this attempt\n\
             fi\n\
             exit $status\n",
            bin = quote(&plan.binary),
            config = quote(&plan.config),
            args = slurm_args(phase, plan.shards),
            retries = plan.retries,
        ));
        submit.push_str(&format!(
            "id=$(sbatch --parsable ${{previous:+--dependency=afterok:$previous}} {name}.sbatch)\n\
             previous=$id ids=\"$ids {} $id\"\n",
            phase.name
        ));
        files.push((format!("{name}.sbatch"), script));
    }
    submit.push_str("echo $ids\n");
    files.push(("submit.sh".into(), submit));
    files
}

/// Kubernetes options beyond the plan.
#[derive(Debug, Clone)]
pub struct K8s {
    pub image: String,
    pub namespace: Option<String>,
    /// A Secret whose keys become the pods' environment (AWS_ACCESS_KEY_ID, …, API keys).
    pub secret: String,
    /// The binary's path in the image.
    pub binary: String,
}

/// Where the config is mounted in the pods.
pub const K8S_CONFIG: &str = "/etc/lrem/run.toml";

/// The Kubernetes recipe: the config as a ConfigMap, then a Job per phase ([`PHASES`]): an Indexed
/// Job (`JOB_COMPLETION_INDEX` of `LREM_SHARD_COUNT`) for a sharded one, applied in order.
pub fn k8s(plan: &Plan, options: &K8s) -> Result<Vec<File>, Error> {
    let config = std::fs::read_to_string(&plan.config).map_err(|e| Error::io(&plan.config, e))?;
    let metadata = |name: &str| {
        let mut m = json!({ "name": name, "labels": { "app.kubernetes.io/name": "lrem-pipeline" } });
        if let Some(ns) = &options.namespace {
            m["namespace"] = json!(ns);
        }
        m
    };
    let pod = |args: &[&'static str], extra_env: serde_json::Value| {
        let mut command = vec![options.binary.as_str(), "run", "--config", K8S_CONFIG, "--quiet", "--log-json"];
        command.extend_from_slice(args);
        json!({
            "restartPolicy": "Never",
            "containers": [{
                "name": "lrem-pipeline",
                "image": options.image,
                "command": command,
                "env": extra_env,
                "envFrom": [{ "secretRef": { "name": options.secret, "optional": true } }],
                "volumeMounts": [{ "name": "config", "mountPath": "/etc/lrem", "readOnly": true }],
            }],
            "volumes": [{ "name": "config", "configMap": { "name": "lrem-config" } }],
        })
    };
    let configmap = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("lrem-config"),
        "data": { "run.toml": config },
    });
    let jobs: Vec<(String, serde_json::Value)> = PHASES
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let name = format!("lrem-{}", phase.name);
            let args = phase_args(phase);
            let spec = if phase.sharded {
                json!({
                    "completionMode": "Indexed",
                    "completions": plan.shards,
                    "parallelism": plan.shards,
                    "backoffLimitPerIndex": plan.retries,
                    "maxFailedIndexes": 0,
                    "template": {
                        "spec": pod(&args, json!([{ "name": "LREM_SHARD_COUNT", "value": plan.shards.to_string() }])),
                    },
                })
            } else {
                json!({ "backoffLimit": plan.retries, "template": { "spec": pod(&args, json!([])) } })
            };
            let job = json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(&name), "spec": spec });
            (phase_file(i, phase), job)
        })
        .collect();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("JSON") + "\n";
    let mut apply = String::from(
        "#!/bin/bash\n\
         # Applies the config, then each phase's Job once the one before completed.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         kubectl apply -f 00-config.json\n",
    );
    let mut files = vec![("00-config.json".to_string(), pretty(&configmap))];
    for (file, job) in jobs {
        let name = job["metadata"]["name"].as_str().expect("a name").to_string();
        apply.push_str(&format!(
            "kubectl apply -f {file}.json\nkubectl wait --for=condition=complete --timeout=24h job/{name}\n"
        ));
        files.push((format!("{file}.json"), pretty(&job)));
    }
    files.push(("apply.sh".into(), apply));
    Ok(files)
}

/// Writes a recipe's files into `dir` (scripts executable).
pub fn write(dir: &Path, files: &[File]) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        if name.ends_with(".sh") || name.ends_with(".sbatch") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// A path as one shell word.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
