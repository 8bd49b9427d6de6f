//! The reference teacher: a measurement instrument, never a default and never used at
//! evaluation time. It stands for what a strong LLM knows about a real catalogue by answering
//! from the sample world's own knowledge (`world.toml`), so that what the rest of the pipeline
//! and the trainer make of a teacher that knows the shop can be measured apart from what a small
//! model knows.
//!
//! It serves the OpenAI chat protocol (`GET /v1/models`, `POST /v1/chat/completions`) and knows
//! two kinds of prompt, whatever their template:
//! - a prompt that contains one of the world's hard-query phrasings (the reasoning prompt) is
//!   answered with one line naming the relevant product types of that query's need:
//!   `Shoppers with this need buy: ground coffee; espresso capsules; energy drink.`;
//! - a prompt that contains such a line (the keyword prompt, which quotes the reasoning) is
//!   answered with those types as a JSON list: `["ground coffee", "espresso capsules", …]`.
//!
//! Anything else gets [`UNKNOWN`], which is not a keyword list: the pipeline records such queries
//! in `failures` (`unparsable_keywords`, after its repair prompt) rather than inventing triples.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::world::World;

/// The model name the teacher serves.
pub const MODEL: &str = "reference-teacher";

/// The reply to a prompt the teacher has no knowledge for.
pub const UNKNOWN: &str = "unknown: the reference teacher knows only the sample world's hard queries";

const REASONING_LEAD: &str = "Shoppers with this need buy: ";

/// What the teacher knows: each hard-query phrasing (normalised) and the product types its need
/// calls for, as keywords.
pub struct Teacher {
    phrasings: Vec<(String, Vec<String>)>,
}

impl Teacher {
    pub fn new(world: &World) -> Result<Self, String> {
        let mut phrasings = Vec::new();
        for need in &world.need {
            let types = world.relevant_types(need)?;
            for query in &need.queries {
                phrasings.push((lrem_schemas::normalize_query(query), types.clone()));
            }
        }
        // Longest first, so a phrasing that contains a shorter one wins.
        phrasings.sort_by_key(|(q, _)| std::cmp::Reverse(q.len()));
        Ok(Self { phrasings })
    }

    /// The reply to one prompt (the text of the conversation's last user turn).
    pub fn answer(&self, prompt: &str) -> String {
        if let Some(start) = prompt.find(REASONING_LEAD) {
            let rest = &prompt[start + REASONING_LEAD.len()..];
            let list = rest.split('.').next().unwrap_or_default();
            let types: Vec<&str> = list.split(';').map(str::trim).filter(|t| !t.is_empty()).collect();
            return serde_json::to_string(&types).expect("strings serialise");
        }
        let normalised = lrem_schemas::normalize_query(prompt);
        match self.phrasings.iter().find(|(q, _)| normalised.contains(q.as_str())) {
            Some((_, types)) => format!("{REASONING_LEAD}{}.", types.join("; ")),
            None => UNKNOWN.to_string(),
        }
    }
}

/// The teacher's routes, ready for `axum::serve`.
pub fn router(teacher: Teacher) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .with_state(Arc::new(teacher))
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "lrem-reference-teacher"}]}))
}

async fn chat(State(teacher): State<Arc<Teacher>>, Json(request): Json<Value>) -> Response {
    let Some(messages) = request["messages"].as_array() else {
        let error = json!({"error": {"message": "`messages` must be an array", "type": "invalid_request_error"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    if request["model"].as_str().is_some_and(|m| m != MODEL) {
        let message = format!("model {:?} is not served here; the model is {MODEL:?}", request["model"]);
        let error = json!({"error": {"message": message, "type": "invalid_request_error"}});
        return (StatusCode::NOT_FOUND, Json(error)).into_response();
    }
    // The last user turn: a repair prompt after an unknown reply gets the unknown reply again.
    let prompt =
        messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or_default();
    let previous = messages.iter().rev().find(|m| m["role"] == "assistant").and_then(|m| m["content"].as_str());
    let content = match previous {
        Some(reply) if reply == UNKNOWN => UNKNOWN.to_string(),
        _ => teacher.answer(prompt),
    };
    let (prompt_tokens, completion_tokens) = (prompt.len() / 4, content.len() / 4);
    Json(json!({
        "id": "chatcmpl-reference-teacher",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response()
}
