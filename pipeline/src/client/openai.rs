//! Typed OpenAI-compatible calls over [`ModelClient::post`]: chat completions and embeddings.
//!
//! A reply that is JSON but not a usable answer (no choices, empty content, wrong number of
//! embeddings) counts as a failed attempt: it is retried and never cached.

use serde::Serialize;
use serde_json::{Value, json};

use super::{CallError, ErrorKind, ModelClient};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(content: impl Into<String>) -> Self {
        Self { role: "system".into(), content: content.into() }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: "assistant".into(), content: content.into() }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub temperature: f64,
    pub max_tokens: u32,
    pub seed: Option<u64>,
    /// `{"type": "json_schema", ...}` when the endpoint constrains output.
    pub response_format: Option<Value>,
    pub top_logprobs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub content: String,
    pub finish_reason: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// `choices[0].logprobs.content`, when requested and offered.
    pub logprobs: Option<Value>,
    pub cached: bool,
    pub attempts: u32,
}

impl ChatRequest {
    /// The full request body, every default written out: it is also the cache key.
    pub fn body(&self, model: &str) -> Value {
        let mut body = json!({
            "model": model,
            "messages": self.messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "n": 1,
            "stream": false,
        });
        if let Some(seed) = self.seed {
            body["seed"] = json!(seed);
        }
        if let Some(format) = &self.response_format {
            body["response_format"] = format.clone();
        }
        if let Some(n) = self.top_logprobs {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(n);
        }
        body
    }

    fn estimated_tokens(&self) -> u32 {
        let chars: usize = self.messages.iter().map(|m| m.content.len()).sum();
        (chars / 4) as u32 + self.max_tokens
    }
}

impl ModelClient {
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatReply, CallError> {
        let body = request.body(&self.model);
        let reply = self.post("chat", "/chat/completions", &body, request.estimated_tokens(), check_chat).await?;
        let choice = &reply.body["choices"][0];
        Ok(ChatReply {
            content: choice["message"]["content"].as_str().unwrap_or_default().to_string(),
            finish_reason: choice["finish_reason"].as_str().unwrap_or("stop").to_string(),
            prompt_tokens: reply.body["usage"]["prompt_tokens"].as_i64().unwrap_or(0),
            completion_tokens: reply.body["usage"]["completion_tokens"].as_i64().unwrap_or(0),
            logprobs: choice.get("logprobs").and_then(|l| l.get("content")).filter(|c| !c.is_null()).cloned(),
            cached: reply.cached,
            attempts: reply.attempts,
        })
    }

    /// Embeds `texts` in one request; vectors come back in input order.
    pub async fn embed(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, bool), CallError> {
        let body = json!({ "model": self.model, "input": texts, "encoding_format": "float" });
        let estimated = texts.iter().map(|t| t.len() / 4 + 1).sum::<usize>() as u32;
        let n = texts.len();
        let reply = self.post("embeddings", "/embeddings", &body, estimated, move |v| check_embeddings(v, n)).await?;
        let mut rows: Vec<(usize, Vec<f32>)> = reply.body["data"]
            .as_array()
            .expect("checked")
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let index = d["index"].as_u64().map_or(i, |x| x as usize);
                let vector =
                    d["embedding"].as_array().expect("checked").iter().map(|x| x.as_f64().unwrap_or(0.0) as f32);
                (index, vector.collect())
            })
            .collect();
        rows.sort_by_key(|(i, _)| *i);
        Ok((rows.into_iter().map(|(_, v)| v).collect(), reply.cached))
    }
}

fn check_chat(body: &Value) -> Result<(), (ErrorKind, String)> {
    let choice = &body["choices"][0];
    if choice.is_null() {
        return Err((ErrorKind::InvalidResponse, "reply has no choices".into()));
    }
    match choice["message"]["content"].as_str() {
        Some(text) if !text.trim().is_empty() => Ok(()),
        _ => Err((ErrorKind::EmptyContent, "reply content is empty".into())),
    }
}

fn check_embeddings(body: &Value, expected: usize) -> Result<(), (ErrorKind, String)> {
    let bad = |m: String| Err((ErrorKind::InvalidResponse, m));
    let Some(data) = body["data"].as_array() else { return bad("reply has no data array".into()) };
    if data.len() != expected {
        return bad(format!("{} embeddings for {expected} inputs", data.len()));
    }
    let mut dim = None;
    for d in data {
        let Some(v) = d["embedding"].as_array() else { return bad("an embedding is not an array of numbers".into()) };
        if v.is_empty() || v.iter().any(|x| !x.is_number()) || dim.is_some_and(|n| n != v.len()) {
            return bad("embeddings are empty, not numbers, or of different dimensions".into());
        }
        dim = Some(v.len());
    }
    Ok(())
}
