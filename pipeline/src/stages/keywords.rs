//! Stage `keywords`: the keyword list extracted from each reasoning (JSON list; tolerant parse;
//! one repair prompt; then `failures`, never an empty list).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::Schema;
use lrem_schemas::config::{Generation, PipelineConfig};
use serde_json::json;

use super::columns::{string_list_array, strings, u64s};
use super::keyword_parse::parse_keywords;
use super::prompts::{Prompts, render};
use super::stage::{Counts, StageCtx, preview};
use super::streaming::{FailureRow, Rows, Streaming, UnitResult, failures_or_abort};
use crate::Error;
use crate::client::openai::{ChatRequest, Message};
use crate::client::{ErrorKind, ModelClient};

pub struct Keywords;

pub struct Reasoned {
    query_id: u64,
    query: String,
    reasoning: String,
}

pub struct Extracted {
    query_id: u64,
    query: String,
    keywords: Vec<String>,
    reply: String,
    parse: &'static str,
    attempts: i32,
}

pub struct Extractor {
    client: Arc<ModelClient>,
    prompt: String,
    repair: String,
    settings: Generation,
}

/// The JSON schema sent as `response_format` when the endpoint constrains decoding.
fn keyword_schema() -> serde_json::Value {
    json!({
        "type": "json_schema",
        "json_schema": {
            "name": "keywords",
            "strict": true,
            // maxLength: a reply that runs one string on (`"+++…"`) is closed early instead of
            // spending the whole token budget.
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 48},
                       "minItems": 1, "maxItems": 16},
        },
    })
}

impl Streaming for Keywords {
    const NAME: &'static str = "keywords";
    const UPSTREAM: &'static [&'static str] = &["reasoning"];
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/keywords.sql");
    const UNITS_PER_PART: usize = 256;
    type Input = Reasoned;
    type Output = Extracted;
    type State = Extractor;

    fn endpoints(config: &PipelineConfig) -> Vec<String> {
        vec![config.stages.keywords.endpoint.clone()]
    }

    fn settings(config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value {
        let s = &config.stages.keywords;
        json!({
            "generation": s, "model": config.model_of(&s.endpoint),
            "prompt": prompts.keywords, "repair": prompts.keywords_repair,
        })
    }

    fn read(batch: &RecordBatch) -> Result<Vec<Reasoned>, Error> {
        let (ids, queries, reasoning) =
            (u64s(batch, "query_id")?, strings(batch, "query")?, strings(batch, "reasoning")?);
        let rows = ids.into_iter().zip(queries).zip(reasoning);
        Ok(rows.map(|((query_id, query), reasoning)| Reasoned { query_id, query, reasoning }).collect())
    }

    async fn prepare(ctx: &StageCtx) -> Result<Extractor, Error> {
        let settings = ctx.config.stages.keywords.clone();
        Ok(Extractor {
            client: ctx.client(&settings.endpoint)?,
            prompt: ctx.prompts.keywords.clone(),
            repair: ctx.prompts.keywords_repair.clone(),
            settings,
        })
    }

    fn client(state: &Extractor) -> Option<&ModelClient> {
        Some(&state.client)
    }

    async fn process(state: &Extractor, unit: Vec<Reasoned>) -> Result<UnitResult<Extracted>, Error> {
        let mut result = UnitResult::new(unit.len() as u64);
        for row in unit {
            match extract(state, row).await? {
                Ok(extracted) => {
                    result.passed += 1;
                    result.rows.push(extracted);
                }
                Err(failure) => result.failed.push(failure),
            }
        }
        Ok(result)
    }

    fn summary(_: Extractor, counts: &Counts) -> String {
        format!("{} keyword lists, {} failed", counts.rows_out, counts.rows_failed)
    }
}

/// One query's keyword list, with a repair prompt when the first reply does not parse.
async fn extract(state: &Extractor, row: Reasoned) -> Result<Result<Extracted, FailureRow>, Error> {
    let Reasoned { query_id, query, reasoning } = row;
    let client = &state.client;
    let failed = |e| failures_or_abort(&client.name, e, std::iter::once(query_id.to_string())).map(|mut f| f.remove(0));
    let mut request = ChatRequest {
        messages: vec![Message::user(render(&state.prompt, json!({ "query": &query, "reasoning": reasoning }))?)],
        temperature: state.settings.temperature,
        max_tokens: state.settings.max_tokens,
        seed: Some(0),
        response_format: state.settings.json_schema.then(keyword_schema),
        top_logprobs: None,
    };
    let first = match client.chat(&request).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(failed(e)?)),
    };
    let mut attempts = first.attempts.max(1) as i32;
    let mut parsed = parse_keywords(&first.content).map(|(k, mode)| (k, mode.as_str(), first.content.clone()));
    if parsed.is_none() {
        request.messages.push(Message::assistant(first.content.clone()));
        request.messages.push(Message::user(state.repair.clone()));
        match client.chat(&request).await {
            Ok(second) => {
                attempts += second.attempts.max(1) as i32;
                parsed = parse_keywords(&second.content).map(|(k, _)| (k, "repaired", second.content));
            }
            Err(e) => return Ok(Err(failed(e)?)),
        }
    }
    Ok(match parsed {
        Some((keywords, parse, reply)) => Ok(Extracted { query_id, query, keywords, reply, parse, attempts }),
        None => Err(FailureRow {
            key: query_id.to_string(),
            error_kind: ErrorKind::UnparsableKeywords,
            message: format!("no keyword list in the reply, even after a repair prompt: {:?}", preview(&first.content)),
            attempts,
        }),
    })
}

impl Rows for Extracted {
    fn columns(rows: &[Self], schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error> {
        Ok(vec![
            ("query_id", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id)))),
            ("query", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.query)))),
            ("keywords", string_list_array(schema, "keywords", rows.iter().map(|r| &r.keywords))?),
            ("reply", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.reply)))),
            ("parse", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.parse)))),
            ("attempts", Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempts)))),
        ])
    }
}
