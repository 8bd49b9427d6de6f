//! Batch-system recipes for a sharded run, as DataTrove's Slurm executor gives them: one job for
//! the shared stages, then an array of `shards` tasks for the per-query stages, started only when
//! the first succeeded. Each task takes its shard from its batch system's environment
//! (`Shard::from_env`); a task that fails is retried (Slurm: requeued by its own script; Kubernetes:
//! `backoffLimitPerIndex`), and a retried task finds its committed stages and parts and goes on
//! from there.
//!
//! - [`slurm`]: `01-shared.sbatch`, `02-shards.sbatch` and `submit.sh` (chained with
//!   `--dependency=afterok`);
//! - [`k8s`]: a ConfigMap with the config, a Job for the shared stages and an Indexed Job for the
//!   shards, as JSON manifests `kubectl apply -f` reads (JSON is YAML, and needs no new crate).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::Error;

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

/// The Slurm recipe: two batch scripts and the script that submits them in order.
pub fn slurm(plan: &Plan, options: &Slurm) -> Vec<File> {
    let header = |name: &str, output: &str, extra: &str| {
        let mut h = format!(
            "#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output={}/{output}\n#SBATCH --open-mode=append\n#SBATCH --chdir={}\n#SBATCH --requeue\n",
            options.logs.display(),
            plan.workdir.display()
        );
        if let Some(p) = &options.partition {
            h.push_str(&format!("#SBATCH --partition={p}\n"));
        }
        h.push_str(extra);
        h
    };
    let run = |args: &str| {
        format!(
            "set -uo pipefail\n\
             {bin} run --config {config} --quiet --log-json {args} && exit 0\n\
             status=$?\n\
             # A failed attempt requeues itself while it has retries left; the next attempt finds what\n\
             # this one committed.\n\
             if (( ${{SLURM_RESTART_COUNT:-0}} < {retries} )); then\n\
             \x20   echo \"lrem: attempt ${{SLURM_RESTART_COUNT:-0}} exited $status; requeueing\" >&2\n\
             \x20   scontrol requeue \"${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}${{SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}}\"\n\
             \x20   sleep 60  # the requeue ends this attempt\n\
             fi\n\
             exit $status\n",
            bin = quote(&plan.binary),
            config = quote(&plan.config),
            retries = plan.retries,
        )
    };
    let shared = header("lrem-shared", "shared-%j.log", "") + &run("--until hard_queries --shard none");
    let array = format!("#SBATCH --array=0-{}\n", plan.shards - 1);
    let shards = header("lrem-shards", "shard-%A_%a.log", &array) + &run("");
    let submit = format!(
        "#!/bin/bash\n\
         # Submits the shared stages, then the shards once they succeeded; prints both job ids.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         mkdir -p {logs}\n\
         shared=$(sbatch --parsable 01-shared.sbatch)\n\
         shards=$(sbatch --parsable --dependency=afterok:$shared 02-shards.sbatch)\n\
         echo \"shared $shared shards $shards\"\n",
        logs = quote(&options.logs)
    );
    vec![("01-shared.sbatch".into(), shared), ("02-shards.sbatch".into(), shards), ("submit.sh".into(), submit)]
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

/// The Kubernetes recipe: the config as a ConfigMap, the shared stages as a Job, the shards as an
/// Indexed Job (`JOB_COMPLETION_INDEX` of `LREM_SHARD_COUNT`), to apply in this order.
pub fn k8s(plan: &Plan, options: &K8s) -> Result<Vec<File>, Error> {
    let config = std::fs::read_to_string(&plan.config).map_err(|e| Error::io(&plan.config, e))?;
    let metadata = |name: &str| {
        let mut m = json!({ "name": name, "labels": { "app.kubernetes.io/name": "lrem-pipeline" } });
        if let Some(ns) = &options.namespace {
            m["namespace"] = json!(ns);
        }
        m
    };
    let pod = |args: &[&str], extra_env: serde_json::Value| {
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
    let shared = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata("lrem-shared"),
        "spec": {
            "backoffLimit": plan.retries,
            "template": { "spec": pod(&["--until", "hard_queries", "--shard", "none"], json!([])) },
        },
    });
    let shards = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata("lrem-shards"),
        "spec": {
            "completionMode": "Indexed",
            "completions": plan.shards,
            "parallelism": plan.shards,
            "backoffLimitPerIndex": plan.retries,
            "maxFailedIndexes": 0,
            "template": {
                "spec": pod(&[], json!([{ "name": "LREM_SHARD_COUNT", "value": plan.shards.to_string() }])),
            },
        },
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).expect("JSON") + "\n";
    let apply = "#!/bin/bash\n\
         # Applies the config, runs the shared stages, then the shards once the first Job completed.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         kubectl apply -f 00-config.json -f 01-shared.json\n\
         kubectl wait --for=condition=complete --timeout=24h job/lrem-shared\n\
         kubectl apply -f 02-shards.json\n"
        .to_string();
    Ok(vec![
        ("00-config.json".into(), pretty(&configmap)),
        ("01-shared.json".into(), pretty(&shared)),
        ("02-shards.json".into(), pretty(&shards)),
        ("apply.sh".into(), apply),
    ])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            binary: "/opt/lrem/lrem-pipeline".into(),
            config: "/work/run's.toml".into(),
            workdir: "/work".into(),
            shards: 4,
            retries: 2,
        }
    }

    #[test]
    fn the_slurm_array_follows_the_shared_job_and_requeues_a_failed_task() {
        let files = slurm(&plan(), &Slurm { partition: Some("cpu".into()), logs: "/work/logs".into() });
        let [(_, shared), (_, shards), (_, submit)] = &files[..] else { panic!("three files") };
        assert!(shared.contains("--until hard_queries --shard none") && !shared.contains("--array"));
        assert!(shards.contains("#SBATCH --array=0-3\n") && shards.contains("#SBATCH --partition=cpu\n"));
        assert!(shards.contains("'/work/run'\\''s.toml'"), "{shards}");
        assert!(shards.contains("SLURM_RESTART_COUNT:-0} < 2") && shards.contains("scontrol requeue"));
        assert!(submit.contains("--dependency=afterok:$shared 02-shards.sbatch"));
    }
}
