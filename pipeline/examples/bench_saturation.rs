//! P2 (saturation): an endpoint with 64 slots and a fixed 50 ms latency serves at most
//! 64 / 0.05 = 1,280 requests/s. Run the reasoning and keywords stages against it at
//! `max_concurrency = 64` and report achieved requests/s as a share of that ceiling.
//!
//! `make bench` runs it; it prints a Markdown table row and appends it to `runs/bench.md`.

#[path = "../tests/pipeline/common.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use lrem_pipeline::run::{RunOptions, run};
use lrem_pipeline::stages;

const SLOTS: usize = 64;
const LATENCY: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = common::Endpoint {
        capacity: Some((Arc::new(tokio::sync::Semaphore::new(SLOTS)), LATENCY)),
        ..Default::default()
    };
    let base = endpoint.start().await;
    let config = common::chat_bench_config(dir.path(), &base, SLOTS);
    let quiet = RunOptions { quiet: true, ..RunOptions::default() };
    run(&config, RunOptions { until: Some(stages::find("hard_queries").unwrap()), ..quiet.clone() }).await.unwrap();
    let (_, manifest) =
        run(&config, RunOptions { until: Some(stages::find("keywords").unwrap()), ..quiet }).await.unwrap();
    let (mut requests, mut seconds) = (0u64, 0f64);
    for stage in ["reasoning", "keywords"] {
        let r = &manifest.stages[stage];
        requests += r.usage["reasoner"]["requests"].as_u64().unwrap();
        seconds += r.seconds;
    }
    let ceiling = SLOTS as f64 / LATENCY.as_secs_f64();
    let achieved = requests as f64 / seconds;
    let bare = bare_client(&base, requests as usize).await;
    let rows = [
        format!(
            "| P2 saturation | {requests} chat requests (reasoning + keywords), 64 slots × 50 ms | {achieved:.0} req/s | ceiling {ceiling:.0} req/s | **{:.3}×** (goal ≥ 0.95) |",
            achieved / ceiling
        ),
        format!(
            "| P2 peer: bare reqwest loop | the same number of requests to the same endpoint, 64 at a time | {bare:.0} req/s | ceiling {ceiling:.0} req/s | {:.3}× (pipeline / bare = {:.3}×) |",
            bare / ceiling,
            achieved / bare
        ),
    ];
    std::fs::create_dir_all("runs").unwrap();
    let mut report = std::fs::OpenOptions::new().create(true).append(true).open("runs/bench.md").unwrap();
    for row in rows {
        println!("{row}");
        writeln!(report, "{row}").unwrap();
    }
}

/// The endpoint's own ceiling as a minimal client sees it: one reqwest client, 64 requests in
/// flight, no cache, no stages.
async fn bare_client(base: &str, n: usize) -> f64 {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let body =
                serde_json::json!({"model": "fake-chat", "messages": [{"role": "user", "content": format!("q {i}")}]});
            let request = client.post(format!("{base}/chat/completions")).json(&body).send();
            async move { request.await.unwrap().bytes().await.unwrap() }
        })
        .buffer_unordered(SLOTS)
        .count()
        .await;
    n as f64 / started.elapsed().as_secs_f64()
}
