//! Stage `reasoning`: the reasoner's unconstrained answer to the reasoning prompt, per hard query.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::Schema;
use lrem_schemas::config::{Generation, PipelineConfig};
use serde_json::json;

use super::columns::{strings, u64s};
use super::prompts::{Prompts, render};
use super::stage::{Counts, StageCtx};
use super::streaming::{Rows, Streaming, UnitResult};
use crate::Error;
use crate::client::ModelClient;
use crate::client::openai::{ChatRequest, Message};

pub struct Reasoning;

pub struct Question {
    query_id: u64,
    query: String,
}

pub struct Reasoned {
    query_id: u64,
    query: String,
    reasoning: String,
    finish_reason: String,
    prompt_tokens: i64,
    completion_tokens: i64,
}

pub struct Reasoner {
    client: Arc<ModelClient>,
    prompt: String,
    settings: Generation,
}

impl Streaming for Reasoning {
    const NAME: &'static str = "reasoning";
    const UPSTREAM: &'static [&'static str] = &["hard_queries"];
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/reasoning.sql");
    const UNITS_PER_PART: usize = 256;
    type Input = Question;
    type Output = Reasoned;
    type State = Reasoner;

    fn endpoints(config: &PipelineConfig) -> Vec<String> {
        vec![config.stages.reasoning.endpoint.clone()]
    }

    fn settings(config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value {
        let s = &config.stages.reasoning;
        json!({ "generation": s, "model": config.model_of(&s.endpoint), "prompt": prompts.reasoning })
    }

    fn read(batch: &RecordBatch) -> Result<Vec<Question>, Error> {
        let rows = u64s(batch, "query_id")?.into_iter().zip(strings(batch, "query")?);
        Ok(rows.map(|(query_id, query)| Question { query_id, query }).collect())
    }

    async fn prepare(ctx: &StageCtx) -> Result<Reasoner, Error> {
        let settings = ctx.config.stages.reasoning.clone();
        Ok(Reasoner { client: ctx.client(&settings.endpoint)?, prompt: ctx.prompts.reasoning.clone(), settings })
    }

    fn client(state: &Reasoner) -> Option<&ModelClient> {
        Some(&state.client)
    }

    async fn process(state: &Reasoner, unit: Vec<Question>) -> Result<UnitResult<Reasoned>, Error> {
        let mut result = UnitResult::new(unit.len() as u64);
        for Question { query_id, query } in unit {
            let request = ChatRequest {
                messages: vec![Message::user(render(&state.prompt, json!({ "query": query }))?)],
                temperature: state.settings.temperature,
                max_tokens: state.settings.max_tokens,
                seed: Some(0),
                response_format: None,
                top_logprobs: None,
            };
            let reply = state.client.chat(&request).await.map(|reply| {
                let row = Reasoned {
                    query_id,
                    query,
                    reasoning: reply.content,
                    finish_reason: reply.finish_reason,
                    prompt_tokens: reply.prompt_tokens,
                    completion_tokens: reply.completion_tokens,
                };
                (1, vec![row])
            });
            result.settle(reply, &state.client.name, std::iter::once(query_id.to_string()))?;
        }
        Ok(result)
    }

    fn summary(_: Reasoner, counts: &Counts) -> String {
        format!("{} reasoned, {} failed", counts.rows_out, counts.rows_failed)
    }
}

impl Rows for Reasoned {
    fn columns(rows: &[Self], _: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error> {
        Ok(vec![
            ("query_id", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id)))),
            ("query", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.query)))),
            ("reasoning", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.reasoning)))),
            ("finish_reason", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.finish_reason)))),
            ("prompt_tokens", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.prompt_tokens)))),
            ("completion_tokens", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.completion_tokens)))),
        ])
    }
}
