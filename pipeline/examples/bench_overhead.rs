//! P1 (orchestration overhead): the reasoning and keywords stages against a zero-latency
//! loopback endpoint, so that everything measured is client-side work (rows in, prompts, HTTP,
//! parsing, cache, Parquet out). Two peers against the same endpoint, at the same concurrency:
//! - `wrk` (Debian) posting a fixed reasoning request: the endpoint's ceiling as a C load generator
//!   sees it (goal: pipeline ≥ 0.9× of it);
//! - `scripts/bench_py_pipeline.py`, Python asyncio + httpx doing the same two calls per query
//!   (Curator's / NeMo Curator's client shape): requests per CPU-second of the client process
//!   (goal: pipeline ≥ 5× per core).
//!
//! The endpoint runs in a child process (this binary with `endpoint`), so a client's CPU time is
//! its own. `make bench` runs it with `PY` set to the bench venv's Python.

#[path = "../tests/pipeline/common.rs"]
mod common;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lrem_pipeline::run::{RunOptions, run};
use lrem_pipeline::stages;

const CONCURRENCY: usize = 64;

/// User + system CPU time of this process, all threads (`/proc/self/stat`, in clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The endpoint process goes with this one, also when a measurement panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("endpoint") {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let base = common::Endpoint::default().start().await;
            println!("{base}");
            std::io::stdout().flush().unwrap();
            std::future::pending::<()>().await;
        });
        return;
    }
    let py = std::env::var("PY").unwrap_or_else(|_| "python3".into());
    let mut endpoint = Command::new(std::env::current_exe().unwrap())
        .arg("endpoint")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the endpoint process");
    let mut line = String::new();
    std::io::BufReader::new(endpoint.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().to_string();
    let endpoint = KillOnDrop(endpoint);
    let rows = measure(&base, &py);
    drop(endpoint);
    std::fs::create_dir_all("runs").unwrap();
    let mut report = std::fs::OpenOptions::new().create(true).append(true).open("runs/bench.md").unwrap();
    for row in rows {
        println!("{row}");
        writeln!(report, "{row}").unwrap();
    }
}

fn measure(base: &str, py: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let config = common::chat_bench_config(dir.path(), base, CONCURRENCY);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let quiet = RunOptions { quiet: true, ..RunOptions::default() };
    runtime
        .block_on(run(&config, RunOptions { until: Some(stages::find("hard_queries").unwrap()), ..quiet.clone() }))
        .unwrap();
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let (run_dir, manifest) =
        runtime.block_on(run(&config, RunOptions { until: Some(stages::find("keywords").unwrap()), ..quiet })).unwrap();
    let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
    let mut requests = 0u64;
    for stage in ["reasoning", "keywords"] {
        requests += manifest.stages[stage].usage["reasoner"]["requests"].as_u64().unwrap();
    }
    let ours = requests as f64 / wall;
    let ours_per_cpu = requests as f64 / cpu;

    // The same queries, for the Python client.
    let queries = dir.path().join("queries.txt");
    let text = runtime.block_on(async {
        let inspector = lrem_pipeline::sql::Inspector::open(&run_dir).await.unwrap();
        let batches = inspector.query("select query from hard_queries order by query_id").await.unwrap();
        let mut out = String::new();
        for b in batches.into_iter().flatten() {
            let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            let col = col.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            for q in col.iter().flatten() {
                out.push_str(q);
                out.push('\n');
            }
        }
        out
    });
    std::fs::write(&queries, text).unwrap();
    let python = Command::new(py)
        .args(["scripts/bench_py_pipeline.py", "--url", base, "--queries"])
        .arg(&queries)
        .args(["--concurrency", &CONCURRENCY.to_string()])
        .output()
        .expect("running scripts/bench_py_pipeline.py");
    assert!(python.status.success(), "{}", String::from_utf8_lossy(&python.stderr));
    let python: serde_json::Value = serde_json::from_slice(&python.stdout).unwrap();
    let (py_rate, py_per_cpu) = (python["req_s"].as_f64().unwrap(), python["req_per_cpu_s"].as_f64().unwrap());

    let wrk = wrk(base, Duration::from_secs(10));
    let mut rows = vec![format!(
        "| P1 overhead: pipeline vs Python | reasoning + keywords, {requests} chat requests to a zero-latency loopback endpoint, {CONCURRENCY} in flight | pipeline: {ours:.0} req/s, {ours_per_cpu:.0} req per CPU-second | Python asyncio + httpx: {py_rate:.0} req/s, {py_per_cpu:.0} req per CPU-second | **{:.1}× per core** (goal ≥ 5) |",
        ours_per_cpu / py_per_cpu
    )];
    rows.push(match wrk {
        Some(wrk) => format!(
            "| P1 overhead: pipeline vs wrk | the same endpoint, {CONCURRENCY} connections, a reasoning request | pipeline: {ours:.0} req/s | wrk: {wrk:.0} req/s | **{:.2}×** (goal ≥ 0.9) |",
            ours / wrk
        ),
        None => "| P1 overhead: pipeline vs wrk | wrk is not installed (`apt-get install wrk`) | | | |".into(),
    });
    rows
}

/// wrk's requests/s posting one reasoning-sized chat request, or None without wrk.
fn wrk(base: &str, duration: Duration) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    let body = serde_json::json!({"model": "fake-chat", "temperature": 0.0, "max_tokens": 256, "seed": 0,
        "messages": [{"role": "user", "content": "A shopper typed this search query into an online shop:\n\n\"a drink more energizing than tea\"\n\nThink about what the shopper actually needs."}]});
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
            serde_json::to_string(&body.to_string()).unwrap()
        ),
    )
    .unwrap();
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONCURRENCY}"), &format!("-d{}s", duration.as_secs()), "-s"])
        .arg(&script)
        .arg(format!("{base}/chat/completions"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())
}
