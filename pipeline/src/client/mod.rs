//! One HTTP client layer for every OpenAI-compatible endpoint (vLLM, SGLang, TEI, llama.cpp,
//! `lrem-train serve`).
//!
//! Each call goes: response cache → rate limits (requests and tokens per minute, `governor`) →
//! adaptive concurrency slot ([`aimd`]) → POST with a timeout → classification. Transient failures
//! (429, 5xx, timeouts, resets, bodies that are not JSON) are retried with exponential backoff and
//! full jitter (`backon`'s schedule), honouring `Retry-After`; caller errors (400, 401, 403, 404,
//! 413, 422) fail at once with the server's message. The API key is read from the environment,
//! sent only as a bearer token, and scrubbed from every message this layer produces.

pub mod aimd;
pub mod cache;
pub mod openai;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use lrem_schemas::config::Endpoint;
use serde_json::Value;

use crate::Error;
use aimd::Aimd;
use cache::Cache;

/// The class of a row's failure, as written to `failures.error_kind` (`http_429`, `timeout`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The endpoint answered with this HTTP status.
    Http(u16),
    Timeout,
    /// The endpoint could not be reached.
    Connect,
    /// The connection broke while the reply was read.
    Body,
    /// The reply is not JSON.
    InvalidJson,
    /// The reply is JSON without the fields the protocol requires.
    InvalidResponse,
    /// A chat reply with no text.
    EmptyContent,
    /// A judge's reply that is neither yes nor no.
    UnparsableJudgement,
    /// No keyword list in a reply, even after the repair prompt.
    UnparsableKeywords,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorKind::Http(status) => return write!(f, "http_{status}"),
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Body => "body",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::EmptyContent => "empty_content",
            ErrorKind::UnparsableJudgement => "unparsable_judgement",
            ErrorKind::UnparsableKeywords => "unparsable_keywords",
        };
        f.write_str(name)
    }
}

/// Why a call failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct CallError {
    /// Stable class for the `failures` table.
    pub kind: ErrorKind,
    pub message: String,
    pub attempts: u32,
    /// A caller error (bad request, key or model name): retrying cannot help, and the run stops.
    pub fatal: bool,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} after {} attempt(s): {}", self.kind, self.attempts, self.message)
    }
}

/// Counters of one endpoint, read by the progress line and the manifest.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub cache_hits: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub failures: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

impl Stats {
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "requests": get(&self.requests),
            "cache_hits": get(&self.cache_hits),
            "retries": get(&self.retries),
            "throttled": get(&self.throttled),
            "failures": get(&self.failures),
            "prompt_tokens": get(&self.prompt_tokens),
            "completion_tokens": get(&self.completion_tokens),
        })
    }
}

/// A response and how it was obtained.
#[derive(Debug, Clone)]
pub struct Reply {
    pub body: Value,
    pub cached: bool,
    pub attempts: u32,
}

pub struct ModelClient {
    pub name: String,
    pub model: String,
    base_url: String,
    http: reqwest::Client,
    api_key: Option<String>,
    timeout: Duration,
    backoff: backon::ExponentialBuilder,
    concurrency: Arc<Aimd>,
    requests_per_minute: Option<DefaultDirectRateLimiter>,
    tokens_per_minute: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    cache: Option<Arc<Cache>>,
    pub stats: Stats,
}

impl ModelClient {
    /// Builds the client of endpoint `name`; a named API key variable must be set.
    pub fn new(name: &str, endpoint: &Endpoint, cache: Option<Arc<Cache>>) -> Result<Self, Error> {
        let api_key = match &endpoint.api_key_env {
            None => None,
            Some(var) => Some(std::env::var(var).map_err(|_| {
                Error::Usage(format!("endpoints.{name}.api_key_env names ${var}, which is not set in the environment"))
            })?),
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(endpoint.max_concurrency as usize)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let per_minute = |n: u32| NonZeroU32::new(n).map(|n| RateLimiter::direct(Quota::per_minute(n)));
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs_f64(endpoint.retry_base_secs))
            .with_max_delay(Duration::from_secs_f64(endpoint.retry_max_secs))
            .with_factor(2.0)
            .with_max_times(endpoint.max_retries as usize)
            .with_jitter();
        Ok(Self {
            name: name.to_string(),
            model: endpoint.model.clone(),
            base_url: endpoint.base_url.trim_end_matches('/').to_string(),
            http,
            api_key,
            timeout: Duration::from_secs_f64(endpoint.timeout_secs),
            backoff,
            concurrency: Aimd::new(endpoint.max_concurrency as usize, Duration::from_secs(2)),
            requests_per_minute: endpoint.requests_per_minute.and_then(per_minute),
            tokens_per_minute: endpoint
                .tokens_per_minute
                .and_then(|n| NonZeroU32::new(n).map(|q| (RateLimiter::direct(Quota::per_minute(q)), q))),
            cache,
            stats: Stats::default(),
        })
    }

    /// Checks, before any work, that the endpoint answers and serves the configured model
    /// (`GET /models`; a server without that route is given the benefit of the doubt).
    pub async fn preflight(&self) -> Result<(), Error> {
        let fail = |message: String| Error::Endpoint { endpoint: self.name.clone(), message: self.scrub(&message) };
        let mut request = self.http.get(format!("{}/models", self.base_url)).timeout(Duration::from_secs(10));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(format!("unreachable at {}: {}", self.base_url, Failure::transport(&e).error.message)))?;
        let status = response.status().as_u16();
        match status {
            404 | 405 => return Ok(()),
            401 | 403 => {
                return Err(fail(format!(
                    "HTTP {status} from {}/models: check the API key variable named by api_key_env",
                    self.base_url
                )));
            }
            s if !(200..300).contains(&s) => return Err(fail(format!("HTTP {status} from {}/models", self.base_url))),
            _ => {}
        }
        let body: Value =
            response.json().await.map_err(|e| fail(format!("{}/models is not JSON: {e}", self.base_url)))?;
        let served: Vec<&str> =
            body["data"].as_array().into_iter().flatten().filter_map(|m| m["id"].as_str()).collect();
        if served.is_empty() || served.contains(&self.model.as_str()) {
            return Ok(());
        }
        Err(fail(format!("model `{}` is not served at {} (served: {})", self.model, self.base_url, served.join(", "))))
    }

    /// The same client, storing and reusing responses in `cache`.
    pub fn with_cache(mut self, cache: Arc<Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn concurrency(&self) -> &Aimd {
        &self.concurrency
    }

    /// POSTs `body` to `path` (e.g. `/chat/completions`), through cache, limits and retries.
    /// `estimated_tokens` feeds the tokens-per-minute limit before the server reports usage.
    /// `check` rejects a JSON reply that is no usable answer; such a reply is retried, not cached.
    pub async fn post(
        &self,
        kind: &str,
        path: &str,
        body: &Value,
        estimated_tokens: u32,
        check: impl Fn(&Value) -> Result<(), (ErrorKind, String)>,
    ) -> Result<Reply, CallError> {
        let key = cache::key(kind, &self.model, body);
        if let Some(cache) = &self.cache
            && let Ok(Some(entry)) = cache.get(&key)
        {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Reply { body: entry.response, cached: true, attempts: 0 });
        }
        let mut delays = self.backoff.build();
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.wait_for_quota(estimated_tokens).await;
            let outcome = {
                let _slot = self.concurrency.acquire().await;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.send(path, body).await.and_then(|reply| match check(&reply) {
                    Ok(()) => Ok(reply),
                    Err((kind, message)) => Err(Failure::retryable(kind, message)),
                })
            };
            let failure = match outcome {
                Ok(response) => {
                    self.concurrency.on_success();
                    self.count_usage(&response);
                    if let Some(cache) = &self.cache {
                        let entry = cache::Entry {
                            kind: kind.to_string(),
                            model: self.model.clone(),
                            request: body.clone(),
                            response: response.clone(),
                            created_ms: now_ms(),
                        };
                        // A cache that cannot store is a lost optimisation, never a lost row.
                        if let Err(e) = cache.put(key, &entry).await {
                            tracing::warn!(endpoint = %self.name, "response cache: {e}");
                        }
                    }
                    return Ok(Reply { body: response, cached: false, attempts });
                }
                Err(f) => f,
            };
            if failure.error.kind == ErrorKind::Http(429) {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                self.concurrency.on_overload();
            }
            let delay = delays.next();
            let Some(delay) = delay.filter(|_| !failure.error.fatal) else {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let mut error = failure.error;
                error.attempts = attempts;
                error.message = self.scrub(&error.message);
                return Err(error);
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let wait = failure.retry_after.unwrap_or(delay);
            tracing::debug!(endpoint = %self.name, kind = %failure.error.kind, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn wait_for_quota(&self, estimated_tokens: u32) {
        if let Some(limiter) = &self.requests_per_minute {
            limiter.until_ready().await;
        }
        if let Some((limiter, quota)) = &self.tokens_per_minute {
            // A request larger than the whole quota waits for a full quota, not forever.
            let n = NonZeroU32::new(estimated_tokens.clamp(1, quota.get())).expect("clamped to >= 1");
            let _ = limiter.until_n_ready(n).await;
        }
    }

    async fn send(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let mut request = self.http.post(format!("{}{path}", self.base_url)).timeout(self.timeout).json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| Failure::transport(&e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| Failure::transport(&e))?;
        if !status.is_success() {
            return Err(Failure::status(status.as_u16(), &bytes, retry_after));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::retryable(ErrorKind::InvalidJson, format!("response is not JSON: {e}")))
    }

    fn count_usage(&self, response: &Value) {
        let usage = &response["usage"];
        let get = |k: &str| usage[k].as_u64().unwrap_or(0);
        self.stats.prompt_tokens.fetch_add(get("prompt_tokens"), Ordering::Relaxed);
        self.stats.completion_tokens.fetch_add(get("completion_tokens"), Ordering::Relaxed);
    }

    /// Removes the API key from a message, whatever the server echoed.
    fn scrub(&self, message: &str) -> String {
        match &self.api_key {
            Some(key) if !key.is_empty() => message.replace(key.as_str(), "[redacted]"),
            _ => message.to_string(),
        }
    }
}

/// One failed attempt.
struct Failure {
    error: CallError,
    retry_after: Option<Duration>,
}

impl Failure {
    fn retryable(kind: ErrorKind, message: String) -> Self {
        Self::new(kind, message, false, None)
    }

    fn new(kind: ErrorKind, message: String, fatal: bool, retry_after: Option<Duration>) -> Self {
        Self { error: CallError { kind, message, attempts: 0, fatal }, retry_after }
    }

    fn transport(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_connect() {
            ErrorKind::Connect
        } else {
            ErrorKind::Body
        };
        // reqwest's Display omits the cause ("error sending request"); the chain says what happened.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        Self::retryable(kind, message)
    }

    fn status(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let text = String::from_utf8_lossy(body);
        // OpenAI's error shape {"error": {"message": ...}}; otherwise the start of the body.
        let detail = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(300).collect());
        let fatal = matches!(status, 400 | 401 | 403 | 404 | 413 | 422);
        let hint = match status {
            401 | 403 => " (check the API key variable named by api_key_env)",
            404 => " (check base_url and the model name)",
            _ => "",
        };
        Self::new(ErrorKind::Http(status), format!("HTTP {status}{hint}: {detail}"), fatal, retry_after)
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs.min(600.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
