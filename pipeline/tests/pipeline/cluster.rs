//! The batch-system recipes, run for real: the Kubernetes manifests' pod commands index by index
//! (no cluster can run here), and the Slurm jobs on a one-node Slurm cluster when one answers
//! (`make cluster-test` starts one), both on an `s3://` run directory in moto.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{Endpoint, Fault, World};
use crate::s3::{Kind, S3};
use lrem_pipeline::cluster::{Plan, Slurm, slurm};
use lrem_pipeline::run::{RunOptions, run};
use lrem_pipeline::sql::{Inspector, OutputFormat, render};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

/// A copy of the world's config for `base` whose run directory is `run_dir`.
fn config_at(world: &World, base: &str, run_dir: &str) -> PathBuf {
    let local = world.config(base, "");
    let text = std::fs::read_to_string(&local).unwrap();
    let path = world.root.join(format!("cluster-{}.toml", xxhash_rust::xxh3::xxh3_64(run_dir.as_bytes())));
    let line = format!("run_dir = \"{}\"", world.run_dir().display());
    assert!(text.contains(&line));
    std::fs::write(&path, text.replace(&line, &format!("run_dir = \"{run_dir}\""))).unwrap();
    path
}

/// Every per-query table of the bucket's run equals the local unsharded run's.
async fn assert_equal_to_local(s3: &S3, local: &Path, url: &str) {
    let inspector = Inspector::open(local).await.unwrap();
    for table in ["hard_queries", "reasoning", "keywords", "cot", "retrieval_2", "gain", "relevance", "triples"] {
        let query = format!("select * from {table} order by 1, 2, 3, 4");
        let ours = render(&inspector.query(&query).await.unwrap()[0], OutputFormat::Jsonl).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"));
        c.args(["sql", "--run", url, "--format", "jsonl", "-e", &query]).envs(s3.env());
        let o = output(c).await;
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(!ours.is_empty() && ours == text(&o.stdout), "{table}: the cluster run differs from the local one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_jobs_pod_commands_run_index_by_index() {
    let s3 = S3::start(Kind::Moto);
    let world = World::new();
    let endpoint = Endpoint::default();
    let base = endpoint.start().await;
    let (local, _) = run(&world.config(&base, ""), RunOptions { quiet: true, ..Default::default() }).await.unwrap();
    let url = s3.url("runs/k8s");
    let config = config_at(&world, &base, &url);
    let out = world.root.join("k8s");
    let mut c = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"));
    c.args(["k8s", "--config", config.to_str().unwrap(), "--shards", "3", "--image", "ghcr.io/lrem/pipeline:0.1"]);
    c.args(["--out", out.to_str().unwrap(), "--retries", "1"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    let manifest = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap()
    };
    let configmap = manifest("00-config.json");
    let apply = std::fs::read_to_string(out.join("apply.sh")).unwrap();
    let phases = lrem_pipeline::stages::PHASES;
    let jobs: Vec<serde_json::Value> = (0..phases.len())
        .map(|i| {
            let file = format!("{:02}-{}.json", i + 1, phases[i].name);
            assert!(apply.contains(&format!("kubectl apply -f {file}")), "{apply}");
            manifest(&file)
        })
        .collect();

    // The shape Kubernetes wants.
    assert_eq!((configmap["apiVersion"].as_str(), configmap["kind"].as_str()), (Some("v1"), Some("ConfigMap")));
    assert_eq!(configmap["data"]["run.toml"].as_str().unwrap(), std::fs::read_to_string(&config).unwrap());
    for (job, phase) in jobs.iter().zip(&phases) {
        assert_eq!((job["apiVersion"].as_str(), job["kind"].as_str()), (Some("batch/v1"), Some("Job")));
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["image"], "ghcr.io/lrem/pipeline:0.1");
        assert_eq!(pod["volumes"][0]["configMap"]["name"], configmap["metadata"]["name"]);
        let spec = &job["spec"];
        if phase.sharded {
            assert_eq!((spec["completionMode"].as_str(), spec["completions"].as_u64()), (Some("Indexed"), Some(3)));
            assert_eq!((spec["parallelism"].as_u64(), spec["backoffLimitPerIndex"].as_u64()), (Some(3), Some(1)));
            let env = &spec["template"]["spec"]["containers"][0]["env"][0];
            assert_eq!(env, &serde_json::json!({"name": "LREM_SHARD_COUNT", "value": "3"}));
        } else {
            assert_eq!((spec["completionMode"].as_str(), spec["backoffLimit"].as_u64()), (None, Some(1)));
        }
    }

    // Each pod's command, as Kubernetes would run it: the config where the ConfigMap is mounted,
    // the Secret's variables, JOB_COMPLETION_INDEX for the shards.
    let mounted = world.root.join("mounted-run.toml");
    std::fs::write(&mounted, configmap["data"]["run.toml"].as_str().unwrap()).unwrap();
    let pod_command = |job: &serde_json::Value, index: Option<u32>| {
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        let words: Vec<String> = container["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().replace(lrem_pipeline::cluster::K8S_CONFIG, mounted.to_str().unwrap()))
            .collect();
        assert_eq!(words[0], "lrem-pipeline");
        let mut c = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"));
        c.args(&words[1..]).envs(s3.env()).env("LREM_CACHE_DIR", world.root.join("pod-cache"));
        for var in container["env"].as_array().unwrap() {
            c.env(var["name"].as_str().unwrap(), var["value"].as_str().unwrap());
        }
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i.to_string());
        }
        output(c)
    };
    for (job, phase) in jobs.iter().zip(&phases) {
        if !phase.sharded {
            let o = pod_command(job, None).await;
            assert!(o.status.success(), "{}: {}", phase.name, text(&o.stderr));
            continue;
        }
        for index in 0..3 {
            let o = pod_command(job, Some(index)).await;
            assert!(o.status.success(), "{} index {index}: {}", phase.name, text(&o.stderr));
            assert!(text(&o.stderr).contains(&format!("\"shard\":\"{index}/3\"")), "{}", text(&o.stderr));
        }
    }
    assert_equal_to_local(&s3, &local, &url).await;
}

/// Whether a Slurm cluster answers here (`make cluster-test` starts one). Without a config Slurm's
/// clients retry for a minute, so none is asked then.
fn slurm_answers() -> bool {
    let configured = std::env::var_os("SLURM_CONF").is_some() || Path::new("/etc/slurm/slurm.conf").exists();
    configured
        && Command::new("timeout")
            .args(["10", "sinfo", "-h"])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slurm_array_with_a_requeued_task_equals_an_unsharded_run() {
    if !slurm_answers() {
        eprintln!("skipped: no Slurm cluster answers here (`make cluster-test` starts one and runs this)");
        return;
    }
    let s3 = S3::start(Kind::Moto);
    let world = World::new();
    let reference = Endpoint::default();
    let (local, _) = run(&world.config(&reference.start().await, ""), RunOptions { quiet: true, ..Default::default() })
        .await
        .unwrap();
    // The first reasoning request of the array is refused as a caller error: its task exits 1,
    // requeues itself, and its second attempt goes on from what the first committed.
    let endpoint = Endpoint::default();
    endpoint.rule("\"messages\"", Fault::Status { code: 400, retry_after: None }, 1);
    let base = endpoint.start().await;
    let url = s3.url("runs/slurm");
    let config = config_at(&world, &base, &url);
    let out = world.root.join("slurm");
    let mut c = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"));
    c.args(["slurm", "--config", config.to_str().unwrap(), "--shards", "4", "--retries", "1"]);
    c.args(["--out", out.to_str().unwrap(), "--submit"]);
    // sbatch hands the submitting environment to the jobs: the storage variables travel with it.
    c.envs(s3.env()).env("LREM_CACHE_DIR", world.root.join("node-cache")).current_dir(&world.root);
    let o = output(c).await;
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let said = text(&o.stdout);
    let ids: Vec<&str> = said.lines().last().unwrap().split_whitespace().skip(1).step_by(2).collect();
    assert_eq!(ids.len(), lrem_pipeline::stages::PHASES.len(), "{said}");
    let started = Instant::now();
    loop {
        let q = Command::new("squeue").args(["-h", "-j", &ids.join(",")]).output().unwrap();
        if text(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "the jobs did not finish:\n{}", text(&q.stdout));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let logs: Vec<(String, String)> = std::fs::read_dir(out.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let requeued = logs.iter().filter(|(_, l)| l.contains("requeueing")).count();
    assert_eq!(requeued, 1, "one task should have failed once and been requeued: {logs:#?}");
    assert_eq!(logs.iter().filter(|(n, _)| n.starts_with("per-query-")).count(), 4, "{logs:#?}");
    assert_equal_to_local(&s3, &local, &url).await;
}

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
fn each_slurm_phase_follows_the_one_before_and_a_failed_task_requeues_itself() {
    let files = slurm(&plan(), &Slurm { partition: Some("cpu".into()), logs: "/work/logs".into() });
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "01-queries.sbatch",
            "02-item-embeddings.sbatch",
            "03-retrieval-1.sbatch",
            "04-hard-queries.sbatch",
            "05-per-query.sbatch",
            "submit.sh"
        ]
    );
    let text = |n: usize| files[n].1.as_str();
    assert!(text(0).contains("--until queries --shard none") && !text(0).contains("--array"));
    assert!(text(1).contains("#SBATCH --array=0-3\n"), "{}", text(1));
    assert!(text(1).contains("--until item_embeddings --shard \"$SLURM_ARRAY_TASK_ID/4\" && exit 0"));
    assert!(text(4).contains("#SBATCH --partition=cpu\n") && text(4).contains("--log-json  --shard"));
    assert!(text(4).contains("'/work/run'\\''s.toml'"), "{}", text(4));
    assert!(text(4).contains("SLURM_RESTART_COUNT:-0} < 2") && text(4).contains("scontrol requeue"));
    assert!(text(5).contains("${previous:+--dependency=afterok:$previous} 05-per-query.sbatch"));
}
