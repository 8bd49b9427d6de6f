//! Run directories on real S3-compatible servers (moto and SeaweedFS on loopback, see `s3.rs`),
//! through the CLI as a user runs it, credentials and endpoint in the environment: the whole DAG
//! equals a local run row for row; concurrent and killed attempts of a shard commit exactly once;
//! bad credentials, a missing bucket or no endpoint stop the run before any work.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{self, Endpoint, Fault, World};
use crate::s3::{Kind, S3};
use lrem_pipeline::run::{RunOptions, run};
use lrem_pipeline::sql::{Inspector, OutputFormat, render};

/// `lrem-pipeline` with the server's variables (and a private response-cache directory).
fn cli(s3: &S3, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"));
    c.args(args).envs(s3.env()).env("LREM_CACHE_DIR", cache).env("RUST_LOG", "warn");
    c
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn local_rows(run_dir: &Path, query: &str) -> String {
    let inspector = Inspector::open(run_dir).await.unwrap();
    render(&inspector.query(query).await.unwrap()[0], OutputFormat::Jsonl).unwrap()
}

async fn remote_rows(s3: &S3, cache: &Path, run: &str, query: &str) -> String {
    let o = output(cli(s3, cache, &["sql", "--run", run, "--format", "jsonl", "-e", query])).await;
    assert!(o.status.success(), "sql on {run}: {}", text(&o.stderr));
    text(&o.stdout)
}

fn quiet() -> RunOptions {
    RunOptions { quiet: true, ..Default::default() }
}

async fn the_dag_equals_a_local_run(kind: Kind) {
    let s3 = S3::start(kind);
    let world = World::new();
    let cache = world.root.join("cache");
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let (local, _) = run(&config, quiet()).await.unwrap();
    let url = s3.url("runs/one");
    let o =
        output(cli(&s3, &cache, &["run", "--quiet", "--config", config.to_str().unwrap(), "--run-dir", &url])).await;
    assert!(o.status.success(), "{kind:?}: {}", text(&o.stderr));
    for table in common::STAGE_TABLES.into_iter().chain(["triples_cold_start", "triples_rl"]) {
        let query = format!("select * from {table} order by 1, 2, 3, 4");
        let (a, b) = (local_rows(&local, &query).await, remote_rows(&s3, &cache, &url, &query).await);
        assert!(!a.is_empty() && a == b, "{kind:?} {table}: differs from the local run");
    }
    let status = output(cli(&s3, &cache, &["status", "--run", &url])).await;
    assert!(text(&status.stdout).contains("triples"), "{}", text(&status.stderr));
    // A second run finds every stage committed and writes nothing new.
    let again =
        output(cli(&s3, &cache, &["run", "--quiet", "--config", config.to_str().unwrap(), "--run-dir", &url])).await;
    assert!(again.status.success(), "{}", text(&again.stderr));
    let gc = output(cli(&s3, &cache, &["gc", "--run", &url, "--grace-minutes", "0"])).await;
    assert!(text(&gc.stdout).starts_with("deleted 0 files"), "{}{}", text(&gc.stdout), text(&gc.stderr));
    // The trainer reads the triples from the bucket through the same commits (the function its
    // `cold-start` and `rl` read them with).
    let mut c = Command::new(trainer());
    c.args(["data", "--run", &url]).envs(s3.env());
    let o = output(c).await;
    let expected = local_rows(&local, "select count(*) as n from triples_cold_start").await;
    let n: serde_json::Value = serde_json::from_str(expected.trim()).unwrap();
    let line = format!("triples_cold_start: {} triples", n["n"]);
    assert!(text(&o.stdout).contains(&line), "{line} not in:\n{}{}", text(&o.stdout), text(&o.stderr));
}

/// `lrem-train`, built beside this test binary by `cargo test --workspace`.
fn trainer() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("lrem-train");
    assert!(path.exists(), "{} is missing: build the workspace (make test does)", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_on_moto_equals_a_local_run() {
    the_dag_equals_a_local_run(Kind::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dag_on_seaweedfs_equals_a_local_run() {
    the_dag_equals_a_local_run(Kind::SeaweedFs).await;
}

/// The rows of shard `index` of `count` in a local unsharded run, against the bucket's shard.
async fn assert_shard_equals(s3: &S3, cache: &Path, local: &Path, url: &str, index: u32, count: u32) {
    for table in ["reasoning", "keywords", "cot", "retrieval_2", "gain", "relevance", "triples"] {
        let ours = format!("select * from {table} order by 1, 2, 3, 4");
        let theirs = format!("select * from {table} where query_id % {count} = {index} order by 1, 2, 3, 4");
        let (a, b) = (local_rows(local, &theirs).await, remote_rows(s3, cache, url, &ours).await);
        assert!(!a.is_empty() && a == b, "{table}: shard {index}/{count} differs from the unsharded run's rows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_attempts_of_one_shard_at_once_commit_exactly_once() {
    let s3 = S3::start(Kind::Moto);
    let world = World::new();
    let cache = world.root.join("cache");
    let endpoint = Endpoint::default();
    // Slow replies, so the two attempts overlap.
    endpoint.rule("\"messages\"", Fault::Slow(Duration::from_millis(10)), usize::MAX);
    let config = world.config(&endpoint.start().await, "");
    let (local, _) = run(&config, quiet()).await.unwrap();
    let url = s3.url("runs/race");
    let cfg = config.to_str().unwrap();
    let shared =
        output(cli(&s3, &cache, &["run", "--quiet", "--config", cfg, "--run-dir", &url, "--until", "hard_queries"]))
            .await;
    assert!(shared.status.success(), "{}", text(&shared.stderr));
    let attempt = |n: usize| {
        let mut c = cli(&s3, &cache.join(n.to_string()), &["run", "--quiet", "--config", cfg, "--run-dir", &url]);
        c.env("SLURM_ARRAY_TASK_ID", "0").env("SLURM_ARRAY_TASK_COUNT", "2");
        output(c)
    };
    let (a, b) = tokio::join!(attempt(1), attempt(2));
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a.stderr), text(&b.stderr));
    assert_shard_equals(&s3, &cache, &local, &url, 0, 2).await;
    // The losing attempt's files are there, named by no commit; gc removes them and only them.
    let gc = output(cli(&s3, &cache, &["gc", "--run", &url, "--grace-minutes", "0"])).await;
    let said = text(&gc.stdout);
    assert!(gc.status.success() && !said.starts_with("deleted 0 "), "the attempts did not overlap? {said}");
    assert_shard_equals(&s3, &cache, &local, &url, 0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_killed_mid_run_and_rerun_leaves_no_duplicate_rows() {
    let s3 = S3::start(Kind::Moto);
    let world = World::new();
    let cache = world.root.join("cache");
    let endpoint = Endpoint::default();
    endpoint.rule("\"messages\"", Fault::Slow(Duration::from_millis(20)), usize::MAX);
    let config = world.config(&endpoint.start().await, "");
    let (local, _) = run(&config, quiet()).await.unwrap();
    let url = s3.url("runs/killed");
    let cfg = config.to_str().unwrap().to_string();
    let shared =
        output(cli(&s3, &cache, &["run", "--quiet", "--config", &cfg, "--run-dir", &url, "--until", "hard_queries"]))
            .await;
    assert!(shared.status.success(), "{}", text(&shared.stderr));
    let shard = |c: &mut Command| {
        c.args(["--shard", "1/2"]);
    };
    let mut kills = 0;
    for _ in 0..3 {
        let mut c = cli(&s3, &cache, &["run", "--quiet", "--config", &cfg, "--run-dir", &url]);
        shard(&mut c);
        // Killed possibly between a part's files and its marker.
        if common::run_or_kill(c, Duration::from_millis(1500)).await {
            break;
        }
        kills += 1;
    }
    let mut last = cli(&s3, &cache, &["run", "--quiet", "--config", &cfg, "--run-dir", &url]);
    shard(&mut last);
    let o = output(last).await;
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(kills >= 1, "the shard finished before it could be killed");
    assert_shard_equals(&s3, &cache, &local, &url, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_a_missing_bucket_or_no_endpoint_stop_the_run_before_any_work() {
    let seaweed = S3::start(Kind::SeaweedFs);
    let moto = S3::start(Kind::Moto);
    let world = World::new();
    let cache = world.root.join("cache");
    let endpoint = Endpoint::default();
    let config = world.config(&endpoint.start().await, "");
    let cfg = config.to_str().unwrap();
    let url = seaweed.url("runs/refused");
    let run_with = |s3: &S3, url: &str, env: &[(&str, &str)]| {
        let mut c = cli(s3, &cache, &["run", "--quiet", "--config", cfg, "--run-dir", url]);
        c.envs(env.iter().copied());
        output(c)
    };

    let o = run_with(&seaweed, &url, &[("AWS_SECRET_ACCESS_KEY", "wrong-secret")]).await;
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains(&url) && err.contains("credentials were refused"), "{err}");
    assert!(!err.contains("wrong-secret") && !err.contains("lrem-test-secret"), "a secret in the message: {err}");
    let missing = "s3://no-such-bucket/run".to_string();
    let o = run_with(&moto, &missing, &[]).await;
    let err = text(&o.stderr);
    assert!(!o.status.success() && err.contains(&missing) && err.contains("the bucket does not exist"), "{err}");
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let started = std::time::Instant::now();
    let o = run_with(&moto, &moto.url("runs/unreachable"), &[("AWS_ENDPOINT", &closed)]).await;
    let err = text(&o.stderr);
    assert!(
        !o.status.success() && err.contains("s3://lrem/runs/unreachable") && err.contains("does not answer"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "an unreachable endpoint took {:?}", started.elapsed());

    // Nothing was written: the bucket has no run, and no stage asked a model anything.
    let status = output(cli(&seaweed, &cache, &["status", "--run", &url])).await;
    assert!(text(&status.stderr).contains("no manifest.json"), "{}", text(&status.stderr));
    assert_eq!(endpoint.log.lock().unwrap().bodies.len(), 0, "a stage ran");
}
