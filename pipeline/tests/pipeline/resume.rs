//! Kill the CLI (SIGKILL) at several instants of a run, resume it, and compare with a run that
//! was never interrupted: same tables, and no request re-sent beyond what was in flight.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{self, Endpoint};
use lrem_pipeline::sql::{Inspector, OutputFormat, render};

fn config(dir: &Path, world: &Path, run: &str, base_url: &str) -> std::path::PathBuf {
    let head = common::run_and_inputs_toml(&dir.join(run), world);
    let text = format!(
        r#"{head}
[endpoints.embedder]
base_url = "{base_url}"
model = "fake-embed"
max_concurrency = 4
[endpoints.reasoner]
base_url = "{base_url}"
model = "fake-chat"
max_concurrency = 8
[stages.retrieval]
k = 20
batch_size = 16
[stages.mining]
min_days = 1
min_impressions = 5
[stages.relevance]
threshold = 0.2
"#,
    );
    let path = dir.join(format!("{run}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn pipeline(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"));
    c.args(["run", "--quiet", "--config", config.to_str().unwrap()]);
    c
}

async fn rows(run_dir: &Path, table: &str) -> String {
    let inspector = Inspector::open(run_dir).await.unwrap();
    let out = inspector.query(&format!("select * from {table} order by 1, 2, 3, 4")).await.unwrap();
    render(&out[0], OutputFormat::Jsonl).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_to_the_same_tables() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world");
    lrem_pipeline::datagen::generate(
        &lrem_pipeline::datagen::Args { seed: 11, items: 1700, queries: 420, log_rows: 6000 },
        &world,
    )
    .unwrap();

    // Every chat reply takes 20 ms, so kills land with requests in flight.
    let slow = |e: &Endpoint| e.rule("\"messages\"", common::Fault::Slow(Duration::from_millis(20)), usize::MAX);
    let reference_endpoint = Endpoint::default();
    slow(&reference_endpoint);
    let reference = config(dir.path(), &world, "reference", &reference_endpoint.start().await);
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || pipeline(&reference).status()).await.unwrap().unwrap();
    assert!(status.success());
    let whole = started.elapsed().as_millis() as u64;

    let endpoint = Endpoint::default();
    slow(&endpoint);
    let resumed = config(dir.path(), &world, "resumed", &endpoint.start().await);
    let mut kills = 0;
    // Each attempt is killed after a slice of an uninterrupted run's time.
    for percent in [12u64, 18, 24, 30, 36, 42] {
        let delay_ms = (whole * percent / 100).max(100);
        if common::run_or_kill(pipeline(&resumed), Duration::from_millis(delay_ms)).await {
            break;
        }
        kills += 1;
    }
    let resumed_cfg = resumed.clone();
    let last =
        tokio::task::spawn_blocking(move || pipeline(&resumed_cfg).arg("--log-json").output()).await.unwrap().unwrap();
    assert!(last.status.success());
    // The batch log: one JSON object a line, an event per stage (`stage done` or `up to date`).
    let log = String::from_utf8(last.stderr).unwrap();
    let events: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().any(|e| e["fields"]["stage"] == "triples"), "{log}");
    assert!(kills >= 2, "the run finished before it could be killed twice ({kills}); raise the world size");

    for table in common::STAGE_TABLES {
        let (a, b) = (rows(&dir.path().join("reference"), table).await, rows(&dir.path().join("resumed"), table).await);
        assert!(a == b, "{table} differs after {kills} kills");
    }
    let log = endpoint.log.lock().unwrap();
    let resent: usize = log.bodies.values().map(|n| n - 1).sum();
    // Per kill, at most the requests in flight (2 × max_concurrency of the busiest endpoint).
    assert!(resent <= kills * 2 * 8, "{resent} requests re-sent over {kills} kills");
}
