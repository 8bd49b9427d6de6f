//! Chat stages: unconstrained reasoning, then keyword extraction (JSON list; tolerant parse;
//! one repair prompt; then `failures`, never an empty list).

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use serde_json::json;

use super::columns::{string_list_array, strings, u64s};
use super::keyword_parse::parse_keywords;
use super::model::failures_or_abort;
use super::parts::{FailureRow, PartSink, UnitResult, run_parts};
use super::{Counts, StageCtx, preview, render, rows};
use crate::Error;
use crate::client::openai::{ChatRequest, Message};

/// Rows per committed part of a chat stage.
const ROWS_PER_PART: usize = 256;

struct Reasoned {
    query_id: u64,
    query: String,
    reasoning: String,
    finish_reason: String,
    prompt_tokens: i64,
    completion_tokens: i64,
}

pub async fn reasoning(ctx: &StageCtx) -> Result<Counts, Error> {
    let settings = ctx.config.stages.reasoning.clone();
    let client = ctx.client(&settings.endpoint)?;
    let only = ctx.shard_filter("query_id");
    let total = super::count_rows(ctx, &format!("select count(*) from hard_queries where {only}")).await?;
    let bar = ctx.progress.stage("reasoning", total);
    let input = rows(ctx, &format!("select query_id, query from hard_queries where {only} order by query_id"), |b| {
        Ok(u64s(b, "query_id")?.into_iter().zip(strings(b, "query")?).collect::<Vec<_>>())
    })
    .await?;
    let sink = PartSink::new(ctx, "reasoning", "reasoning")?;
    let prompt = ctx.prompts.reasoning.clone();
    let process = |(query_id, query): (u64, String)| {
        let (client, prompt, settings) = (client.clone(), prompt.clone(), settings.clone());
        async move {
            let request = ChatRequest {
                messages: vec![Message::user(render(&prompt, json!({ "query": query }))?)],
                temperature: settings.temperature,
                max_tokens: settings.max_tokens,
                seed: Some(0),
                response_format: None,
                top_logprobs: None,
            };
            let mut result = UnitResult::new(1);
            match client.chat(&request).await {
                Ok(reply) => {
                    result.passed = 1;
                    result.rows.push(Reasoned {
                        query_id,
                        query,
                        reasoning: reply.content,
                        finish_reason: reply.finish_reason,
                        prompt_tokens: reply.prompt_tokens,
                        completion_tokens: reply.completion_tokens,
                    });
                }
                Err(e) => result.failed = failures_or_abort(&client.name, e, std::iter::once(query_id.to_string()))?,
            }
            Ok(result)
        }
    };
    let to_batch = |rows: &[Reasoned]| {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.query))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.reasoning))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.finish_reason))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.prompt_tokens))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.completion_tokens))),
        ];
        Ok(RecordBatch::try_new(sink.schema.clone(), columns)?)
    };
    let in_flight = client.concurrency().limit() * 2;
    let counts = run_parts(&sink, input, ROWS_PER_PART, in_flight, process, to_batch, |c| {
        bar.update(c.rows_in, Some(client.as_ref()))
    })
    .await?;
    bar.finish(format!("{} reasoned, {} failed", counts.rows_out, counts.rows_failed));
    Ok(counts)
}

struct Extracted {
    query_id: u64,
    query: String,
    keywords: Vec<String>,
    reply: String,
    parse: &'static str,
    attempts: i32,
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

pub async fn keywords(ctx: &StageCtx) -> Result<Counts, Error> {
    let settings = ctx.config.stages.keywords.clone();
    let client = ctx.client(&settings.endpoint)?;
    let only = ctx.shard_filter("query_id");
    let total = super::count_rows(ctx, &format!("select count(*) from reasoning where {only}")).await?;
    let bar = ctx.progress.stage("keywords", total);
    let input =
        rows(ctx, &format!("select query_id, query, reasoning from reasoning where {only} order by query_id"), |b| {
            let (ids, queries, reasoning) = (u64s(b, "query_id")?, strings(b, "query")?, strings(b, "reasoning")?);
            Ok(ids.into_iter().zip(queries).zip(reasoning).map(|((i, q), r)| (i, q, r)).collect::<Vec<_>>())
        })
        .await?;
    let sink = PartSink::new(ctx, "keywords", "keywords")?;
    let (prompt, repair) = (ctx.prompts.keywords.clone(), ctx.prompts.keywords_repair.clone());
    let process = |(query_id, query, reasoning): (u64, String, String)| {
        let (client, prompt, repair, settings) = (client.clone(), prompt.clone(), repair.clone(), settings.clone());
        async move {
            let mut request = ChatRequest {
                messages: vec![Message::user(render(&prompt, json!({ "query": &query, "reasoning": reasoning }))?)],
                temperature: settings.temperature,
                max_tokens: settings.max_tokens,
                seed: Some(0),
                response_format: settings.json_schema.then(keyword_schema),
                top_logprobs: None,
            };
            let mut result = UnitResult::new(1);
            let key = || std::iter::once(query_id.to_string());
            let first = match client.chat(&request).await {
                Ok(r) => r,
                Err(e) => {
                    result.failed = failures_or_abort(&client.name, e, key())?;
                    return Ok(result);
                }
            };
            let mut attempts = first.attempts.max(1) as i32;
            let mut parsed = parse_keywords(&first.content).map(|(k, mode)| (k, mode.as_str(), first.content.clone()));
            if parsed.is_none() {
                request.messages.push(Message::assistant(first.content.clone()));
                request.messages.push(Message::user(repair));
                match client.chat(&request).await {
                    Ok(second) => {
                        attempts += second.attempts.max(1) as i32;
                        parsed = parse_keywords(&second.content).map(|(k, _)| (k, "repaired", second.content));
                    }
                    Err(e) => {
                        result.failed = failures_or_abort(&client.name, e, key())?;
                        return Ok(result);
                    }
                }
            }
            match parsed {
                Some((keywords, parse, reply)) => {
                    result.passed = 1;
                    result.rows.push(Extracted { query_id, query, keywords, reply, parse, attempts });
                }
                None => result.failed.push(FailureRow {
                    key: query_id.to_string(),
                    error_kind: "unparsable_keywords".into(),
                    message: format!(
                        "no keyword list in the reply, even after a repair prompt: {:?}",
                        preview(&first.content)
                    ),
                    attempts,
                }),
            }
            Ok(result)
        }
    };
    let to_batch = |rows: &[Extracted]| {
        let keywords = string_list_array(&sink.schema, "keywords", rows.iter().map(|r| &r.keywords))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.query))),
            keywords,
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.reply))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.parse))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempts))),
        ];
        Ok(RecordBatch::try_new(sink.schema.clone(), columns)?)
    };
    let in_flight = client.concurrency().limit() * 2;
    let counts = run_parts(&sink, input, ROWS_PER_PART, in_flight, process, to_batch, |c| {
        bar.update(c.rows_in, Some(client.as_ref()))
    })
    .await?;
    bar.finish(format!("{} keyword lists, {} failed", counts.rows_out, counts.rows_failed));
    Ok(counts)
}
