//! A fault-injecting OpenAI-compatible endpoint on loopback, for engine tests.
//!
//! It answers deterministically (hashed bag-of-words embeddings; reasoning and keyword replies
//! derived from the query's words) so the DAG has something to retrieve, and it injects scripted
//! faults: a rule matches requests whose body contains a string and fires a number of times.
//! It is a test double for fault injection; the real models are served by `lrem-train serve`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The top of a run config: where the run goes and the world's inputs (`world` holds the files
/// `datagen` writes).
pub fn run_and_inputs_toml(run_dir: &std::path::Path, world: &std::path::Path) -> String {
    format!(
        "run_dir = \"{}\"\n[inputs]\nitems = \"{}\"\nquery_log = \"{}\"\n",
        run_dir.display(),
        world.join("items.parquet").display(),
        world.join("query_log.parquet").display()
    )
}

/// A small generated world in a temporary directory, and configs for runs over it.
pub struct World {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let args = lrem_pipeline::datagen::Args { seed: 7, items: 1700, queries: 420, log_rows: 6000 };
        lrem_pipeline::datagen::generate(&args, &root.join("world")).unwrap();
        Self { _dir: dir, root }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// A config for `base_url`, with fast retries; `extra` is appended (TOML).
    pub fn config(&self, base_url: &str, extra: &str) -> PathBuf {
        let head = run_and_inputs_toml(&self.run_dir(), &self.root.join("world"));
        let text = format!(
            r#"{head}
[endpoints.embedder]
base_url = "{base_url}"
model = "fake-embed"
max_concurrency = 4
timeout_secs = 1.0
max_retries = 3
retry_base_secs = 0.01
retry_max_secs = 0.05
[endpoints.reasoner]
base_url = "{base_url}"
model = "fake-chat"
max_concurrency = 8
timeout_secs = 1.0
max_retries = 3
retry_base_secs = 0.01
retry_max_secs = 0.05
[stages.retrieval]
k = 20
batch_size = 32
[stages.mining]
min_days = 1
min_impressions = 5
max_ctr = 0.2
min_missed_items = 1
min_missed_share = 0.3
[stages.relevance]
method = "similarity"
endpoint = "embedder"
threshold = 0.2
{extra}
"#,
        );
        let path = self.root.join(format!("config-{}.toml", xxhash_rust::xxh3::xxh3_64(text.as_bytes())));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// A chat-heavy bench run in `dir`: a generated world (8,000 queries, 80,000 log rows) where every
/// logged query counts as hard, with both endpoints at `base` and `concurrency` chat requests in
/// flight. Returns the config's path.
pub fn chat_bench_config(dir: &std::path::Path, base: &str, concurrency: usize) -> std::path::PathBuf {
    let world = dir.join("world");
    let args = lrem_pipeline::datagen::Args { seed: 5, items: 2000, queries: 8000, log_rows: 80_000 };
    lrem_pipeline::datagen::generate(&args, &world).unwrap();
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            r#"{top}
[endpoints.embedder]
base_url = "{base}"
model = "fake-embed"
[endpoints.reasoner]
base_url = "{base}"
model = "fake-chat"
max_concurrency = {concurrency}
[stages.mining]
min_days = 1
min_impressions = 1
max_ctr = 1.0
min_missed_items = 0
min_missed_share = 0.0
"#,
            top = run_and_inputs_toml(&dir.join("run"), &world),
        ),
    )
    .unwrap();
    config
}

/// The tables a whole run writes (besides the two splits and `failures`).
pub const STAGE_TABLES: [&str; 10] = [
    "queries",
    "retrieval_1",
    "hard_queries",
    "reasoning",
    "keywords",
    "cot",
    "retrieval_2",
    "gain",
    "relevance",
    "triples",
];

/// Runs `command` and SIGKILLs it after `delay` unless it ended first; `true` when it ended (and
/// then it must have succeeded).
pub async fn run_or_kill(mut command: std::process::Command, delay: Duration) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success());
                true
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                false
            }
        }
    })
    .await
    .unwrap()
}

#[derive(Debug, Clone)]
pub enum Fault {
    Status {
        code: u16,
        retry_after: Option<u32>,
    },
    Slow(Duration),
    ResetMidBody,
    InvalidJson,
    /// The chat reply is cut: `finish_reason: "length"` and this content.
    Truncated(String),
    EmptyContent,
    /// The chat reply content, verbatim.
    Content(String),
    /// A 500 whose body echoes the request's Authorization header (a leaky server).
    EchoAuthorization,
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule applies to requests whose body contains this (e.g. a query, or "Think about").
    pub body_contains: String,
    pub fault: Fault,
    /// How many matching requests it fires on.
    pub times: usize,
}

#[derive(Default)]
pub struct Log {
    pub requests: usize,
    pub by_path: HashMap<String, usize>,
    /// Request bodies seen, with how often each was seen.
    pub bodies: HashMap<String, usize>,
}

#[derive(Clone, Default)]
pub struct Endpoint {
    pub rules: Arc<Mutex<Vec<Rule>>>,
    pub log: Arc<Mutex<Log>>,
    /// A model server's capacity: each chat reply holds one of these slots for `latency`.
    pub capacity: Option<(Arc<tokio::sync::Semaphore>, Duration)>,
}

impl Endpoint {
    pub fn rule(&self, body_contains: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule { body_contains: body_contains.into(), fault, times });
    }

    pub fn requests(&self) -> usize {
        self.log.lock().unwrap().requests
    }

    /// Serves on a free loopback port until the test ends; returns the base URL (with `/v1`).
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/chat/completions", post(chat))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/v1")
    }

    fn take_fault(&self, path: &str, body: &str) -> Option<Fault> {
        {
            let mut log = self.log.lock().unwrap();
            log.requests += 1;
            *log.by_path.entry(path.into()).or_default() += 1;
            *log.bodies.entry(body.into()).or_default() += 1;
        }
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| r.times > 0 && body.contains(&r.body_contains))?;
        rule.times -= 1;
        Some(rule.fault.clone())
    }
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "fake-embed"}, {"id": "fake-chat"}]}))
}

/// Applies a fault that replaces the whole response; `None` means answer normally (maybe altered).
async fn apply(fault: &Option<Fault>, headers: &HeaderMap) -> Option<Response> {
    match fault {
        Some(Fault::Status { code, retry_after }) => {
            let mut r =
                (StatusCode::from_u16(*code).unwrap(), Json(json!({"error": {"message": format!("injected {code}")}})))
                    .into_response();
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
            }
            Some(r)
        }
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(*d).await;
            None
        }
        Some(Fault::ResetMidBody) => {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(Bytes::from_static(b"{\"choices\": [")), Err(std::io::Error::other("connection reset"))];
            Some(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from_stream(futures::stream::iter(chunks)))
                    .unwrap(),
            )
        }
        Some(Fault::InvalidJson) => {
            Some(Response::builder().header("content-type", "application/json").body(Body::from("{not json")).unwrap())
        }
        Some(Fault::EchoAuthorization) => {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            Some(
                (StatusCode::INTERNAL_SERVER_ERROR, format!("upstream failed for request with {auth}")).into_response(),
            )
        }
        _ => None,
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn hash(word: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(word.as_bytes())
}

/// Hashed bag of words, 64 dimensions.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 64];
    for w in words(text) {
        let h = hash(&w);
        v[(h % 64) as usize] += if h & 64 == 0 { 1.0 } else { -1.0 };
    }
    v
}

async fn embeddings(State(ep): State<Endpoint>, headers: HeaderMap, body: String) -> Response {
    let fault = ep.take_fault("embeddings", &body);
    if let Some(r) = apply(&fault, &headers).await {
        return r;
    }
    let request: Value = serde_json::from_str(&body).unwrap();
    let data: Vec<Value> = request["input"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embed(t.as_str().unwrap())}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": request["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
        .into_response()
}

/// The quoted query of a prompt (`"…"` on the first lines).
fn quoted(prompt: &str) -> String {
    prompt.split('"').nth(1).unwrap_or("").to_string()
}

/// A deterministic "reasoning": words related to the query's words by hash.
pub fn reasoning_for(query: &str) -> String {
    const VOCAB: [&str; 12] =
        ["coffee", "blanket", "charger", "spray", "cushion", "lamp", "bottle", "filter", "brush", "case", "gel", "mat"];
    let picks: Vec<&str> = words(query).iter().map(|w| VOCAB[(hash(w) % VOCAB.len() as u64) as usize]).collect();
    format!("The shopper needs products like: {}.", picks.join(", "))
}

async fn chat(State(ep): State<Endpoint>, headers: HeaderMap, body: String) -> Response {
    // A slot is busy for the latency only, as a model server's batch slot is busy while it
    // generates; parsing and answering below are the endpoint's own overhead.
    if let Some((slots, latency)) = &ep.capacity {
        let _slot = slots.acquire().await.unwrap();
        tokio::time::sleep(*latency).await;
    }
    let fault = ep.take_fault("chat", &body);
    if let Some(r) = apply(&fault, &headers).await {
        return r;
    }
    let request: Value = serde_json::from_str(&body).unwrap();
    let messages = request["messages"].as_array().unwrap();
    let prompt = messages[0]["content"].as_str().unwrap_or("");
    let mut finish = "stop";
    let content = match &fault {
        Some(Fault::EmptyContent) => String::new(),
        Some(Fault::Content(c)) => c.clone(),
        Some(Fault::Truncated(c)) => {
            finish = "length";
            c.clone()
        }
        _ if prompt.contains("Which products would help") => reasoning_for(&quoted(prompt)),
        _ if prompt.contains("JSON array") => {
            // The reasoning, and the prompt's own words after it, as a small model answers.
            let notes = prompt.split("Text:").nth(1).unwrap_or("");
            let list: Vec<String> =
                words(notes).into_iter().filter(|w| w.len() > 3 && w != "products" && w != "like").collect();
            serde_json::to_string(&list).unwrap()
        }
        _ if prompt.contains("yes or no") => if hash(prompt) % 3 == 0 { "no" } else { "yes" }.to_string(),
        _ => "ok".to_string(),
    };
    Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": 8, "total_tokens": prompt.len() / 4 + 8},
    }))
    .into_response()
}
