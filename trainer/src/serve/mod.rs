//! `lrem-train serve`: an OpenAI-compatible server over the model library (`/v1/models`,
//! `/v1/chat/completions` with SSE streaming, `/v1/embeddings`, `/health`).

mod api;
mod chat;
mod workers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::backend::Inference;
use crate::bail;
use crate::error::{Context, Result};
use crate::lrem::LremModel;
use crate::model::LanguageModel;
use crate::model::bert::SentenceEncoder;
use crate::model::constrain::Grammars;
use crate::model::tokenizer::TextTokenizer;
use api::{ApiError, EmbeddingInput, EmbeddingRequest};
use workers::{EmbedJob, Embedder, GenJob, InputKind};

/// What to serve and how; also the `lrem-train serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// A decoder for chat completions (`.gguf` file or Hugging Face folder).
    #[arg(long)]
    pub chat: Option<PathBuf>,
    /// The name clients use for it (default: the file name up to its first dot).
    #[arg(long)]
    pub chat_name: Option<String>,
    /// Embeddings: a sentence-transformers folder (mean pooling), or a decoder, GGUF file or HF
    /// folder of a `*ForCausalLM` (last-token pooling).
    #[arg(long)]
    pub embed: Option<PathBuf>,
    /// The name clients use for it (default: the folder name).
    #[arg(long)]
    pub embed_name: Option<String>,
    /// A cold-start model folder (`model/` of a training run) served on `/v1/embeddings`:
    /// `input_type` "query" (default) writes a CoT first, "item" embeds a title.
    #[arg(long)]
    pub lrem: Option<PathBuf>,
    /// The name clients use for it (default: the folder name).
    #[arg(long)]
    pub lrem_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub addr: SocketAddr,
    /// An environment variable holding the bearer token clients must send; required off loopback.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Sequences decoded together (continuous batching).
    #[arg(long, default_value_t = 16)]
    pub max_batch: usize,
    /// Requests waiting per model before the server answers 503.
    #[arg(long, default_value_t = 1024)]
    pub queue: usize,
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// Multiply a GGUF decoder's dequantised f32 weights instead of its Q4_0 / Q4_1 / Q8_0 blocks
    /// as stored: slower, and equal to transformers to float rounding rather than to 8-bit
    /// activation error.
    #[arg(long)]
    pub dequantize: bool,
}

struct ChatModel {
    name: String,
    tokenizer: TextTokenizer,
    context: usize,
    jobs: mpsc::Sender<GenJob>,
    /// JSON-schema constrained decoding for `response_format`.
    grammars: Grammars,
}

struct EmbedModel {
    name: String,
    tokenizer: TextTokenizer,
    jobs: mpsc::Sender<EmbedJob>,
    /// An LREM model: `input_type` chooses the query (CoT first) or item sequence.
    lrem: bool,
    /// A longer input is refused (a decoder's context).
    max_tokens: usize,
    /// The length of its vectors.
    dim: usize,
}

struct AppState {
    chat: Option<ChatModel>,
    embed: Vec<EmbedModel>,
    api_key: Option<String>,
    created: u64,
    queue: usize,
}

type Shared = State<Arc<AppState>>;

/// The served name of a model: given, or the file name up to its first dot
/// (`SmolLM2-135M-Instruct.Q4_1.gguf` → `SmolLM2-135M-Instruct`), or the folder's name.
fn served_name(path: &std::path::Path, given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let leaf = if path.file_name().is_some_and(|n| n == "model") { path.parent().unwrap_or(path) } else { path };
        let name = leaf.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        name.split('.').next().unwrap_or_default().to_string()
    })
}

/// Loads the models, binds, and serves until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let server = bind(config).await?;
    tracing::info!("serving {} on http://{}/v1", server.names.join(", "), server.addr);
    server.run(shutdown()).await
}

/// A bound server, not yet accepting (tests bind port 0 and read `addr`).
pub struct Server {
    pub addr: SocketAddr,
    pub names: Vec<String>,
    listener: tokio::net::TcpListener,
    app: Router,
}

impl Server {
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
        axum::serve(self.listener, self.app).with_graceful_shutdown(shutdown).await?;
        Ok(())
    }
}

fn load_decoder(
    path: &Path,
    dequantize: bool,
    device: &burn::tensor::Device<Inference>,
) -> Result<LanguageModel<Inference>> {
    if dequantize { LanguageModel::load(path, device) } else { LanguageModel::load_quantized(path, device) }
}

/// Loads the models, starts their threads and binds the address.
pub async fn bind(config: ServeConfig) -> Result<Server> {
    let api_key = match &config.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: the variable is not set"))?),
        None => None,
    };
    if !config.addr.ip().is_loopback() && api_key.is_none() {
        bail!("refusing to listen on non-loopback {} without --api-key-env naming a bearer token", config.addr);
    }
    if config.chat.is_none() && config.embed.is_none() && config.lrem.is_none() {
        bail!("nothing to serve: give --chat MODEL, --embed MODEL and/or --lrem MODEL");
    }
    let device = Default::default();
    let chat = match &config.chat {
        Some(path) => {
            let lm = load_decoder(path, config.dequantize, &device)?;
            let (tx, rx) = mpsc::channel(config.queue);
            let model = ChatModel {
                name: served_name(path, config.chat_name.clone()),
                tokenizer: lm.tokenizer.clone(),
                context: lm.config.max_position,
                jobs: tx,
                grammars: Grammars::new(&lm.tokenizer, lm.tokenizer.stop_ids().first().copied().unwrap_or(0))
                    .with_context(|| format!("{}: building the grammar engine", path.display()))?,
            };
            let max_batch = config.max_batch;
            std::thread::Builder::new()
                .name("decoder".into())
                .spawn(move || workers::generation_loop(lm, rx, max_batch))?;
            Some(model)
        }
        None => None,
    };
    let mut embed = Vec::new();
    if let Some(path) = &config.embed {
        // (tokenizer, model, longest input, dimension, texts per batch)
        let (tokenizer, embedder, max_tokens, dim, max_batch) = if is_decoder(path)? {
            let lm = load_decoder(path, config.dequantize, &device)?;
            let (context, dim) = (lm.config.max_position, lm.config.hidden_size);
            (lm.tokenizer.clone(), Embedder::Decoder(Box::new(lm.model)), context, dim, config.max_batch)
        } else {
            let encoder = SentenceEncoder::<Inference>::load(path, &device)?;
            let dim = encoder.dim;
            // BERT truncates to its positions, as sentence-transformers does.
            (encoder.tokenizer.clone(), Embedder::Bert(encoder), usize::MAX, dim, 256)
        };
        let (tx, rx) = mpsc::channel(config.queue);
        embed.push(EmbedModel {
            name: served_name(path, config.embed_name.clone()),
            tokenizer,
            jobs: tx,
            lrem: false,
            max_tokens,
            dim,
        });
        std::thread::Builder::new()
            .name("encoder".into())
            .spawn(move || workers::embedding_loop(embedder, rx, max_batch))?;
    }
    if let Some(path) = &config.lrem {
        let model = LremModel::<Inference>::load(path, &device)?;
        let (tx, rx) = mpsc::channel(config.queue);
        embed.push(EmbedModel {
            name: served_name(path, config.lrem_name.clone()),
            tokenizer: model.lm.tokenizer.clone(),
            jobs: tx,
            lrem: true,
            max_tokens: model.lm.config.max_position,
            dim: model.lm.config.hidden_size,
        });
        let max_batch = config.max_batch;
        std::thread::Builder::new()
            .name("lrem".into())
            .spawn(move || workers::embedding_loop(Embedder::Lrem(Box::new(model)), rx, max_batch))?;
    }
    if embed.windows(2).any(|w| w[0].name == w[1].name) {
        bail!("--embed and --lrem are served under the same name `{}`; set --embed-name or --lrem-name", embed[0].name);
    }
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let state = Arc::new(AppState { chat, embed, api_key, created, queue: config.queue });
    let names: Vec<String> =
        state.chat.iter().map(|c| c.name.clone()).chain(state.embed.iter().map(|e| e.name.clone())).collect();
    let app = router(state, config.max_body_bytes);
    let listener =
        tokio::net::TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
    Ok(Server { addr: listener.local_addr()?, names, listener, app })
}

/// A GGUF file or a folder whose `config.json` names a causal LM is a decoder (last-token
/// pooling); anything else is read as a sentence-transformers folder.
fn is_decoder(path: &std::path::Path) -> Result<bool> {
    if path.is_file() {
        return Ok(true);
    }
    let config = path.join("config.json");
    let Ok(text) = std::fs::read_to_string(&config) else { return Ok(false) };
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| config.display().to_string())?;
    Ok(value["architectures"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.ends_with("ForCausalLM")))))
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    let v1 = Router::new()
        .route("/models", get(models))
        .route("/chat/completions", post(chat::completions))
        .route("/embeddings", post(embeddings))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(move |request: Request, next: Next| announced_size(request, next, max_body_bytes)))
        .with_state(state)
}

/// A body whose announced length is over the limit gets its 413 before a byte of it is read, so
/// a client waiting on the headers hears the answer instead of a reset. (Bodies without a length
/// are capped by `DefaultBodyLimit` as they are read.)
async fn announced_size(request: Request, next: Next, limit: usize) -> Response {
    let announced = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        let message = format!("the body has {} bytes; the limit is {limit} (--max-body-bytes)", announced.unwrap_or(0));
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
    }
    next.run(request).await
}

async fn authorize(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let sent = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if sent != Some(key.as_str()) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
        }
    }
    next.run(request).await
}

async fn models(State(state): Shared) -> impl IntoResponse {
    let data: Vec<_> = state
        .chat
        .iter()
        .map(|c| c.name.clone())
        .chain(state.embed.iter().map(|e| e.name.clone()))
        .map(|id| json!({"id": id, "object": "model", "created": state.created, "owned_by": "lrem"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}

/// The body, or the OpenAI-shaped error for an unreadable or oversized one (413).
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

fn unknown_model(model: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("the model `{model}` does not exist")).param("model")
}

fn queue_full(queue: usize) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the queue is full ({queue} requests waiting); retry later"))
}

async fn embeddings(State(state): Shared, raw: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let request: EmbeddingRequest = api::parse(&body(raw)?)?;
    let model = state.embed.iter().find(|m| m.name == request.model).ok_or_else(|| unknown_model(&request.model))?;
    let kind = match request.input_type.as_deref() {
        None | Some("query") => InputKind::Query,
        Some("item" | "document" | "passage") => InputKind::Item,
        Some(other) => {
            return Err(
                ApiError::bad_request(format!("input_type `{other}`: expected query or item")).param("input_type")
            );
        }
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            let message = format!("encoding_format `{other}`: expected \"float\" or \"base64\"");
            return Err(ApiError::bad_request(message).param("encoding_format"));
        }
    };
    if let Some(d) = request.dimensions.filter(|&d| d != model.dim as i64) {
        let message = format!(
            "dimensions {d}: `{}` gives {}-dimensional embeddings and is not trained for shorter ones",
            model.name, model.dim
        );
        return Err(ApiError::bad_request(message).param("dimensions"));
    }
    let (texts, ids) = inputs(model, request.input)?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let (tx, rx) = oneshot::channel();
    let job = EmbedJob { ids, texts, kind, reply: tx };
    model.jobs.try_send(job).map_err(|_| queue_full(state.queue))?;
    let vectors =
        rx.await.map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the model failed on this batch"))?;
    let data: Vec<_> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, (v, cot))| {
            let embedding = if base64 { json!(f32_base64(&v)) } else { json!(v) };
            match cot {
                // An LREM query's embedding comes with the CoT it was computed from.
                Some(cot) if model.lrem => {
                    json!({"object": "embedding", "index": i, "embedding": embedding, "cot": cot})
                }
                _ => json!({"object": "embedding", "index": i, "embedding": embedding}),
            }
        })
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data, "model": model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response())
}

/// The texts and token ids of an embeddings request, each checked against the model. Token ids
/// are embedded as sent (vLLM's convention: no special tokens added); an LREM model, which
/// builds its own sequence around the text, gets them decoded.
fn inputs(model: &EmbedModel, input: EmbeddingInput) -> Result<(Vec<String>, Vec<Vec<u32>>), ApiError> {
    let too_long = |i: usize, n: usize| {
        let message = format!("input[{i}] has {n} tokens; this model's context is {} tokens", model.max_tokens);
        ApiError::bad_request(message).param("input")
    };
    let (texts, ids) = match input {
        EmbeddingInput::One(text) => (vec![text], None),
        EmbeddingInput::Many(texts) => (texts, None),
        EmbeddingInput::Tokens(ids) => (Vec::new(), Some(vec![ids])),
        EmbeddingInput::ManyTokens(ids) => (Vec::new(), Some(ids)),
    };
    let Some(ids) = ids else {
        if texts.is_empty() {
            return Err(ApiError::bad_request("`input` is empty").param("input"));
        }
        let mut ids = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let one = model.tokenizer.encode(text, true).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if one.len() > model.max_tokens {
                return Err(too_long(i, one.len()));
            }
            ids.push(one);
        }
        return Ok((texts, ids));
    };
    let vocab = model.tokenizer.vocab_size();
    if ids.is_empty() || ids.iter().any(Vec::is_empty) {
        return Err(ApiError::bad_request("`input` is empty or holds an empty token list").param("input"));
    }
    let mut texts = Vec::with_capacity(ids.len());
    for (i, one) in ids.iter().enumerate() {
        if let Some(bad) = one.iter().find(|&&t| t as usize >= vocab) {
            let message = format!("input[{i}] holds token id {bad}; this model's vocabulary has {vocab} tokens");
            return Err(ApiError::bad_request(message).param("input"));
        }
        if one.len() > model.max_tokens {
            return Err(too_long(i, one.len()));
        }
        texts.push(model.tokenizer.decode(one, true).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    Ok((texts, ids))
}

/// An embedding as OpenAI's `encoding_format: "base64"` sends it: its f32 values, little-endian.
fn f32_base64(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
