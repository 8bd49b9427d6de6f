//! `POST /v1/chat/completions`: validation, the chat template, then the decoder thread; the reply
//! as one JSON object or as server-sent events.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::api::{self, ApiError, ChatRequest, Stop};
use super::workers::{GenEvent, GenJob};
use super::{ChatModel, Shared, body, queue_full, unknown_model};
use crate::model::generate::{Completion, SamplingParams};
use crate::model::penalties::Penalties;
use crate::model::tokenizer::{ChatMessage, TextTokenizer};

/// Without `max_tokens`, a completion may use this many tokens (and never more than the context).
const DEFAULT_MAX_TOKENS: usize = 512;
const MAX_N: i64 = 16;
const MAX_TOP_LOGPROBS: i64 = 20;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn content_text(content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => Ok(parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("")),
        Value::Null => Ok(String::new()),
        _ => Err(ApiError::bad_request("message content must be a string or a list of text parts").param("messages")),
    }
}

/// Checks every field against the model and turns the request into a prompt and sampling params.
fn prepare(model: &ChatModel, request: &ChatRequest) -> Result<(Vec<u32>, SamplingParams), ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty").param("messages"));
    }
    let constraint = match &request.response_format {
        Some(format) => model
            .grammars
            .for_response_format(format)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")).param("response_format"))?,
        None => None,
    };
    let mut messages = Vec::with_capacity(request.messages.len());
    for m in &request.messages {
        messages.push(ChatMessage { role: m.role.clone(), content: content_text(&m.content)? });
    }
    let rendered = model.tokenizer.render_chat(&messages, true).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let prompt = model.tokenizer.encode(&rendered, true).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let room = model.context.saturating_sub(prompt.len());
    if room == 0 {
        return Err(ApiError::bad_request(format!(
            "the prompt has {} tokens; this model's context is {} tokens",
            prompt.len(),
            model.context
        ))
        .param("messages"));
    }
    let max_tokens = match request.max_completion_tokens.or(request.max_tokens) {
        None => DEFAULT_MAX_TOKENS.min(room),
        Some(m) if m < 1 => {
            return Err(ApiError::bad_request(format!("max_tokens must be at least 1, got {m}")).param("max_tokens"));
        }
        Some(m) if m as u64 > room as u64 => {
            return Err(ApiError::bad_request(format!(
                "max_tokens {m} does not fit: the prompt has {} tokens and the context is {}, so at most {room}",
                prompt.len(),
                model.context
            ))
            .param("max_tokens"));
        }
        Some(m) => m as usize,
    };
    let n = request.n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::bad_request(format!("n must be between 1 and {MAX_N}, got {n}")).param("n"));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(
            ApiError::bad_request(format!("temperature must be in [0, 2], got {temperature}")).param("temperature")
        );
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad_request(format!("top_p must be in (0, 1], got {top_p}")).param("top_p"));
    }
    let top_logprobs = match (request.logprobs, request.top_logprobs) {
        (_, Some(k)) if !(0..=MAX_TOP_LOGPROBS).contains(&k) => {
            return Err(
                ApiError::bad_request(format!("top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]")).param("top_logprobs")
            );
        }
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::bad_request("top_logprobs needs logprobs: true").param("top_logprobs"));
        }
        (_, k) => k.unwrap_or(0) as usize,
    };
    let d = Penalties::default();
    let penalties = Penalties {
        presence: request.presence_penalty.unwrap_or(d.presence),
        frequency: request.frequency_penalty.unwrap_or(d.frequency),
        repetition: request.repetition_penalty.unwrap_or(d.repetition),
        ..d
    };
    if let Err((param, message)) = penalties.check() {
        return Err(ApiError::bad_request(message).param(param));
    }
    let stop = match &request.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::bad_request("stop takes up to 4 non-empty strings").param("stop"));
    }
    Ok((
        prompt,
        SamplingParams {
            temperature,
            top_k: request.top_k.filter(|&k| k > 0).map_or(0, |k| k as usize),
            top_p,
            max_tokens,
            seed: request.seed.unwrap_or_else(rand::random),
            stop,
            stop_ids: if request.ignore_eos { Vec::new() } else { model.tokenizer.stop_ids() },
            n: n as usize,
            top_logprobs,
            constraint,
            keep_stop: false,
            penalties,
        },
    ))
}

pub async fn completions(State(state): Shared, raw: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let request: ChatRequest = api::parse(&body(raw)?)?;
    let model = state.chat.as_ref().filter(|m| m.name == request.model).ok_or_else(|| unknown_model(&request.model))?;
    let (prompt, params) = prepare(model, &request)?;
    let prompt_tokens = prompt.len();
    let n = params.n;
    let want_logprobs = request.logprobs;
    let (tx, mut rx) = mpsc::unbounded_channel();
    model
        .jobs
        .try_send(GenJob { prompt, params, stream: request.stream, events: tx })
        .map_err(|_| queue_full(state.queue))?;
    let id = format!("chatcmpl-{}-{}", state.created, NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = model.name.clone();
    if request.stream {
        let tokenizer = model.tokenizer.clone();
        let chunk = move |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": name, "choices": choices});
        let stream = async_stream(rx, n, move |event| match event {
            GenEvent::Delta { sample, text } => Some(chunk(
                json!([{"index": sample, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]),
            )),
            GenEvent::Done(c) => {
                let logprobs = want_logprobs.then(|| logprobs_json(&tokenizer, &c));
                Some(chunk(
                    json!([{"index": c.sample, "delta": {}, "logprobs": logprobs, "finish_reason": c.finish_reason.as_str()}]),
                ))
            }
            GenEvent::Failed(message) => Some(json!({"error": {"message": message, "type": "server_error"}})),
        });
        return Ok(Sse::new(stream).into_response());
    }
    let mut done: Vec<Completion> = Vec::with_capacity(n);
    while done.len() < n {
        match rx.recv().await {
            Some(GenEvent::Done(c)) => done.push(c),
            Some(GenEvent::Delta { .. }) => {}
            Some(GenEvent::Failed(message)) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)),
            None => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the decoder stopped")),
        }
    }
    done.sort_by_key(|c| c.sample);
    let completion_tokens: usize = done.iter().map(|c| c.ids.len()).sum();
    let choices: Vec<Value> = done
        .iter()
        .map(|c| {
            json!({"index": c.sample, "message": {"role": "assistant", "content": c.text},
                   "logprobs": want_logprobs.then(|| logprobs_json(&model.tokenizer, c)),
                   "finish_reason": c.finish_reason.as_str()})
        })
        .collect();
    Ok(axum::Json(json!({
        "id": id, "object": "chat.completion", "created": created, "model": model.name, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response())
}

/// OpenAI's `logprobs.content`: each generated token with its log-probability and alternatives.
fn logprobs_json(tokenizer: &TextTokenizer, c: &Completion) -> Value {
    let token = |id: u32| tokenizer.decode(&[id], false).unwrap_or_default();
    let entry = |id: u32, logprob: f32| {
        let text = token(id);
        json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()})
    };
    let content: Vec<Value> = c
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let mut e = entry(id, c.logprobs[i]);
            let top: Vec<Value> =
                c.top.get(i).map_or(Vec::new(), |t| t.iter().map(|&(id, lp)| entry(id, lp)).collect());
            e["top_logprobs"] = json!(top);
            e
        })
        .collect();
    json!({"content": content})
}

/// SSE events from the decoder's events until `n` samples are done, then `[DONE]`.
fn async_stream(
    rx: mpsc::UnboundedReceiver<GenEvent>,
    n: usize,
    to_json: impl Fn(GenEvent) -> Option<Value> + Send + Sync + 'static,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    let to_json = std::sync::Arc::new(to_json);
    futures::stream::unfold((rx, 0usize, false), move |(mut rx, done, ended)| {
        let to_json = to_json.clone();
        async move {
            if ended {
                return None;
            }
            if done == n {
                return Some((Ok(Event::default().data("[DONE]")), (rx, done, true)));
            }
            let event = rx.recv().await?;
            let (done, ended) = match &event {
                GenEvent::Done(_) => (done + 1, false),
                GenEvent::Failed(_) => (done, true),
                GenEvent::Delta { .. } => (done, false),
            };
            let data = to_json(event).map_or_else(String::new, |v| v.to_string());
            Some((Ok(Event::default().data(data)), (rx, done, ended)))
        }
    })
}
