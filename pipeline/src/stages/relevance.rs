//! Stage `relevance`: every pair of ② − ① scored by similarity, an LLM judge or a rerank
//! endpoint; pairs at or above the threshold are `relevant` and become triples.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::Schema;
use lrem_schemas::config::{PipelineConfig, RelevanceMethod};
use serde_json::json;

use super::columns::{f32s, i64s, strings, u64s};
use super::prompts::{Prompts, render};
use super::stage::{Counts, StageCtx, preview};
use super::streaming::{Rows, Streaming, UnitResult};
use crate::Error;
use crate::client::openai::{ChatRequest, Message};
use crate::client::{CallError, ErrorKind, ModelClient};

pub struct Relevance;

/// One gain pair to score.
#[derive(Debug, Clone)]
pub struct Pair {
    query_id: u64,
    item_id: i64,
    similarity: f32,
    query: String,
    title: String,
}

pub struct Judged {
    query_id: u64,
    item_id: i64,
    score: f32,
    relevant: bool,
    method: &'static str,
}

pub struct Scorer {
    method: RelevanceMethod,
    /// The judge or rerank endpoint (none for `similarity`).
    client: Option<Arc<ModelClient>>,
    judge_prompt: String,
    threshold: f32,
}

impl Streaming for Relevance {
    const NAME: &'static str = "relevance";
    const UPSTREAM: &'static [&'static str] = &["gain"];
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/relevance.sql");
    const UNITS_PER_PART: usize = 4096;
    type Input = Pair;
    type Output = Judged;
    type State = Scorer;

    fn endpoints(config: &PipelineConfig) -> Vec<String> {
        let s = &config.stages.relevance;
        if s.method == RelevanceMethod::Similarity { vec![] } else { vec![s.endpoint.clone()] }
    }

    fn settings(config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value {
        let s = &config.stages.relevance;
        json!({ "relevance": s, "model": config.model_of(&s.endpoint), "prompt": prompts.relevance_judge })
    }

    fn read(batch: &RecordBatch) -> Result<Vec<Pair>, Error> {
        let (q, i, s) = (u64s(batch, "query_id")?, i64s(batch, "item_id")?, f32s(batch, "score")?);
        let (query, title) = (strings(batch, "query")?, strings(batch, "title")?);
        let columns = q.into_iter().zip(i).zip(s).zip(query).zip(title);
        Ok(columns
            .map(|((((query_id, item_id), similarity), query), title)| Pair {
                query_id,
                item_id,
                similarity,
                query,
                title,
            })
            .collect())
    }

    async fn prepare(ctx: &StageCtx) -> Result<Scorer, Error> {
        let s = &ctx.config.stages.relevance;
        let client = match s.method {
            RelevanceMethod::Similarity => None,
            _ => Some(ctx.client(&s.endpoint)?),
        };
        Ok(Scorer {
            method: s.method,
            client,
            judge_prompt: ctx.prompts.relevance_judge.clone(),
            threshold: s.threshold as f32,
        })
    }

    fn client(state: &Scorer) -> Option<&ModelClient> {
        state.client.as_deref()
    }

    async fn process(state: &Scorer, unit: Vec<Pair>) -> Result<UnitResult<Judged>, Error> {
        let mut result = UnitResult::new(unit.len() as u64);
        let method = match state.method {
            RelevanceMethod::Similarity => "similarity",
            RelevanceMethod::Judge => "judge",
            RelevanceMethod::Rerank => "rerank",
        };
        for pair in unit {
            let score = match (state.method, &state.client) {
                (RelevanceMethod::Similarity, _) => Ok(pair.similarity),
                (RelevanceMethod::Judge, Some(c)) => judge(c, &state.judge_prompt, &pair).await?,
                (RelevanceMethod::Rerank, Some(c)) => rerank(c, &pair).await,
                _ => unreachable!("client exists for endpoint methods"),
            };
            let (query_id, item_id) = (pair.query_id, pair.item_id);
            let judged = score.map(|score| {
                (1, vec![Judged { query_id, item_id, score, relevant: score >= state.threshold, method }])
            });
            let endpoint = state.client.as_ref().map_or("relevance", |c| c.name.as_str());
            result.settle(judged, endpoint, std::iter::once(format!("{query_id}:{item_id}")))?;
        }
        Ok(result)
    }

    fn summary(_: Scorer, counts: &Counts) -> String {
        format!("{} pairs scored, {} failed", counts.rows_out, counts.rows_failed)
    }
}

impl Rows for Judged {
    fn columns(rows: &[Self], _: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error> {
        Ok(vec![
            ("query_id", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id)))),
            ("item_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.item_id)))),
            ("score", Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score)))),
            ("relevant", Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.relevant))))),
            ("method", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.method)))),
        ])
    }
}

/// P(yes) from the judge: from logprobs of the first token when offered, else the answer's word.
async fn judge(client: &ModelClient, prompt: &str, pair: &Pair) -> Result<Result<f32, CallError>, Error> {
    let content = render(prompt, json!({ "query": pair.query, "title": pair.title }))?;
    let request = ChatRequest {
        messages: vec![Message::user(content)],
        temperature: 0.0,
        max_tokens: 3,
        seed: Some(0),
        response_format: None,
        top_logprobs: Some(5),
    };
    let reply = match client.chat(&request).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(p) = reply.logprobs.as_ref().and_then(yes_probability) {
        return Ok(Ok(p));
    }
    let answer = reply.content.trim().to_lowercase();
    Ok(if answer.starts_with("yes") {
        Ok(1.0)
    } else if answer.starts_with("no") {
        Ok(0.0)
    } else {
        Err(CallError {
            kind: ErrorKind::UnparsableJudgement,
            message: format!("judge answered {:?}, neither yes nor no", preview(&reply.content)),
            attempts: reply.attempts,
            fatal: false,
        })
    })
}

/// P(yes) / (P(yes) + P(no)) over the first token's top logprobs.
fn yes_probability(logprobs: &serde_json::Value) -> Option<f32> {
    let first = logprobs.as_array()?.first()?;
    let (mut yes, mut no) = (0f64, 0f64);
    for candidate in first["top_logprobs"].as_array()? {
        let token = candidate["token"].as_str()?.trim().to_lowercase();
        let p = candidate["logprob"].as_f64()?.exp();
        match token.as_str() {
            "yes" => yes += p,
            "no" => no += p,
            _ => {}
        }
    }
    (yes + no > 0.0).then(|| (yes / (yes + no)) as f32)
}

/// Cohere/vLLM/Jina-style `/rerank`: `{"results": [{"index", "relevance_score"}]}`.
async fn rerank(client: &ModelClient, pair: &Pair) -> Result<f32, CallError> {
    let body = json!({ "model": client.model, "query": pair.query, "documents": [pair.title], "top_n": 1 });
    let check = |v: &serde_json::Value| match v["results"][0]["relevance_score"].as_f64() {
        Some(_) => Ok(()),
        None => Err((ErrorKind::InvalidResponse, "rerank reply has no results[0].relevance_score".to_string())),
    };
    let reply =
        client.post("rerank", "/rerank", &body, (pair.query.len() + pair.title.len()) as u32 / 4, check).await?;
    Ok(reply.body["results"][0]["relevance_score"].as_f64().unwrap_or(0.0) as f32)
}
