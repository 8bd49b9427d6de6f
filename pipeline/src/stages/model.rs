//! Model stages over the embeddings endpoint (item embeddings, retrieval sets ① and ②) and the
//! relevance filter (similarity, LLM judge, or rerank endpoint).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float32Builder, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, UInt64Array,
};
use futures::StreamExt;
use lrem_schemas::config::{IndexKind, RelevanceMethod};
use serde_json::json;

use super::columns::{f32_lists, f32s, i64s, strings, u64s};
use super::parts::{FailureRow, PartSink, UnitResult, run_parts};
use super::{Counts, StageCtx, render, rows};
use crate::Error;
use crate::client::openai::{ChatRequest, Message};
use crate::client::{CallError, ModelClient};
use crate::index::{ExactIndex, HnswIndex, Index};

/// Embedding requests per part (so a part holds `batch_size × 64` items or queries).
const UNITS_PER_PART: usize = 64;

/// A failure of the whole run (fatal HTTP status: wrong model, bad key) or of one unit's rows.
pub fn failures_or_abort(
    endpoint: &str,
    error: CallError,
    keys: impl Iterator<Item = String>,
) -> Result<Vec<FailureRow>, Error> {
    if error.fatal {
        return Err(Error::Endpoint { endpoint: endpoint.to_string(), message: error.to_string() });
    }
    Ok(keys
        .map(|key| FailureRow {
            key,
            error_kind: error.kind.clone(),
            message: error.message.clone(),
            attempts: error.attempts as i32,
        })
        .collect())
}

pub async fn item_embeddings(ctx: &StageCtx) -> Result<Counts, Error> {
    let client = ctx.client(&ctx.config.stages.retrieval.endpoint)?;
    let total = super::count_rows(ctx, "select count(*) from items").await?;
    let bar = ctx.progress.stage("item_embeddings", total);
    let batch_size = ctx.config.stages.retrieval.batch_size.max(1) as usize;
    let items = rows(ctx, "select item_id, title from items order by item_id", |b| {
        Ok(i64s(b, "item_id")?.into_iter().zip(strings(b, "title")?).collect::<Vec<_>>())
    })
    .await?;
    let units = items.chunks(batch_size).map(|chunk| chunk.into_iter().collect::<Result<Vec<_>, _>>());
    let sink = PartSink::new(ctx, "item_embeddings", "item_embeddings")?;
    let process = |unit: Vec<(i64, String)>| {
        let client = client.clone();
        async move {
            let titles: Vec<String> = unit.iter().map(|(_, t)| t.clone()).collect();
            let mut result = UnitResult::new(unit.len() as u64);
            match client.embed(&titles).await {
                Ok((vectors, _)) => {
                    result.passed = unit.len() as u64;
                    result.rows = unit.into_iter().map(|(id, _)| id).zip(vectors).collect();
                }
                Err(e) => {
                    result.failed = failures_or_abort(&client.name, e, unit.iter().map(|(id, _)| id.to_string()))?
                }
            }
            Ok(result)
        }
    };
    let to_batch = |rows: &[(i64, Vec<f32>)]| {
        let mut list = ListBuilder::new(Float32Builder::new()).with_field(embedding_field());
        for (_, v) in rows {
            list.append_value(v.iter().map(|x| Some(*x)));
        }
        let columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from_iter_values(rows.iter().map(|(id, _)| *id))), Arc::new(list.finish())];
        Ok(RecordBatch::try_new(sink.schema.clone(), columns)?)
    };
    let in_flight = client.concurrency().limit() * 2;
    let counts = run_parts(&sink, units, UNITS_PER_PART, in_flight, process, to_batch, |c| {
        bar.update(c.rows_in, Some(client.as_ref()))
    })
    .await?;
    bar.finish(format!("{} items embedded, {} failed", counts.rows_out, counts.rows_failed));
    Ok(counts)
}

fn embedding_field() -> arrow::datatypes::FieldRef {
    match lrem_schemas::table("item_embeddings")
        .expect("defined")
        .schema()
        .field_with_name("embedding")
        .expect("defined")
        .data_type()
    {
        arrow::datatypes::DataType::List(f) => f.clone(),
        _ => unreachable!("embedding is a list"),
    }
}

/// Loads the item index from the `item_embeddings` table.
async fn load_index(ctx: &StageCtx) -> Result<Arc<Index>, Error> {
    let mut stream = rows(ctx, "select item_id, embedding from item_embeddings order by item_id", |b| {
        Ok(i64s(b, "item_id")?.into_iter().zip(f32_lists(b, "embedding")?).collect::<Vec<_>>())
    })
    .await?;
    let mut index: Option<ExactIndex> = None;
    while let Some(row) = stream.next().await {
        let (id, vector) = row?;
        let index = index.get_or_insert_with(|| ExactIndex::new(vector.len()));
        index.add(id, &vector).map_err(|e| Error::Usage(format!("item_embeddings: {e}")))?;
    }
    let index = index.ok_or_else(|| Error::Usage("item_embeddings is empty: no item could be embedded".into()))?;
    let settings = &ctx.config.stages.retrieval;
    Ok(Arc::new(match settings.index {
        IndexKind::Exact => Index::Exact(index),
        IndexKind::Hnsw => {
            let ef = (settings.ef_search.max(settings.k)) as usize;
            let build = tokio::task::spawn_blocking(move || HnswIndex::build(&index, ef));
            Index::Hnsw(build.await.map_err(|e| Error::Internal(e.to_string()))?)
        }
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    /// ①: the raw query.
    First,
    /// ②: the query and its CoT.
    Second,
}

pub async fn retrieval(ctx: &StageCtx, set: Set) -> Result<Counts, Error> {
    let settings = &ctx.config.stages.retrieval;
    let client = ctx.client(&settings.endpoint)?;
    let only = ctx.shard_filter("query_id");
    let (table, sql) = match set {
        Set::First => {
            ("retrieval_1", format!("select query_id, query, '' as cot from queries where {only} order by query_id"))
        }
        Set::Second => ("retrieval_2", format!("select query_id, query, cot from cot where {only} order by query_id")),
    };
    let sql = sql.as_str();
    let index = load_index(ctx).await?;
    let total = super::count_rows(ctx, &format!("select count(*) from ({sql})")).await?;
    let bar = ctx.progress.stage(table, total);
    let queries = rows(ctx, sql, |b| {
        let texts = strings(b, "query")?
            .into_iter()
            .zip(strings(b, "cot")?)
            .map(|(q, c)| if c.is_empty() { q } else { format!("{q}, {c}") });
        Ok(u64s(b, "query_id")?.into_iter().zip(texts).collect::<Vec<_>>())
    })
    .await?;
    let units = queries
        .chunks(settings.batch_size.max(1) as usize)
        .map(|chunk| chunk.into_iter().collect::<Result<Vec<_>, _>>());
    let sink = PartSink::new(ctx, table, table)?;
    let k = settings.k as usize;
    let process = |unit: Vec<(u64, String)>| {
        let (client, index) = (client.clone(), index.clone());
        async move {
            let texts: Vec<String> = unit.iter().map(|(_, t)| t.clone()).collect();
            let mut result = UnitResult::new(unit.len() as u64);
            match client.embed(&texts).await {
                Ok((vectors, _)) => {
                    let hits = tokio::task::spawn_blocking(move || index.search(&vectors, k))
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    result.passed = unit.len() as u64;
                    for ((query_id, _), hits) in unit.iter().zip(hits) {
                        result.rows.extend(
                            hits.iter().enumerate().map(|(rank, h)| (*query_id, h.item_id, rank as i32 + 1, h.score)),
                        );
                    }
                }
                Err(e) => {
                    result.failed = failures_or_abort(&client.name, e, unit.iter().map(|(id, _)| id.to_string()))?
                }
            }
            Ok(result)
        }
    };
    let to_batch = |rows: &[(u64, i64, i32, f32)]| {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.3))),
        ];
        Ok(RecordBatch::try_new(sink.schema.clone(), columns)?)
    };
    let in_flight = client.concurrency().limit() * 2;
    let counts = run_parts(&sink, units, UNITS_PER_PART, in_flight, process, to_batch, |c| {
        bar.update(c.rows_in, Some(client.as_ref()))
    })
    .await?;
    bar.finish(format!("{} queries, {} pairs", counts.rows_out, counts.rows_written));
    Ok(counts)
}

/// One gain pair to score.
#[derive(Debug, Clone)]
struct Pair {
    query_id: u64,
    item_id: i64,
    similarity: f32,
    query: String,
    title: String,
}

pub async fn relevance(ctx: &StageCtx) -> Result<Counts, Error> {
    let settings = ctx.config.stages.relevance.clone();
    let only = ctx.shard_filter("g.query_id");
    let sql = format!(
        "select g.query_id, g.item_id, g.score, c.query, i.title \
         from gain g join cot c on c.query_id = g.query_id join items i on i.item_id = g.item_id \
         where {only} order by g.query_id, g.item_id"
    );
    let total = super::count_rows(ctx, &format!("select count(*) from gain g where {only}")).await?;
    let bar = ctx.progress.stage("relevance", total);
    let pairs = rows(ctx, &sql, |b| {
        let (q, i, s) = (u64s(b, "query_id")?, i64s(b, "item_id")?, f32s(b, "score")?);
        let (query, title) = (strings(b, "query")?, strings(b, "title")?);
        Ok((0..b.num_rows())
            .map(|r| Pair {
                query_id: q[r],
                item_id: i[r],
                similarity: s[r],
                query: query[r].clone(),
                title: title[r].clone(),
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let sink = PartSink::new(ctx, "relevance", "relevance")?;
    let client = match settings.method {
        RelevanceMethod::Similarity => None,
        _ => Some(ctx.client(&settings.endpoint)?),
    };
    let judge_prompt = ctx.prompts.relevance_judge.clone();
    let method = settings.method;
    let process = |pair: Pair| {
        let (client, prompt) = (client.clone(), judge_prompt.clone());
        async move {
            let mut result = UnitResult::new(1);
            let key = format!("{}:{}", pair.query_id, pair.item_id);
            let score = match (method, &client) {
                (RelevanceMethod::Similarity, _) => Ok(pair.similarity),
                (RelevanceMethod::Judge, Some(c)) => judge(c, &prompt, &pair).await?,
                (RelevanceMethod::Rerank, Some(c)) => rerank(c, &pair).await,
                _ => unreachable!("client exists for endpoint methods"),
            };
            match score {
                Ok(score) => {
                    result.passed = 1;
                    result.rows.push((pair.query_id, pair.item_id, score));
                }
                Err(e) => {
                    let name = client.as_ref().map_or("relevance", |c| c.name.as_str());
                    result.failed = failures_or_abort(name, e, std::iter::once(key))?;
                }
            }
            Ok(result)
        }
    };
    let threshold = settings.threshold as f32;
    let method_name = match method {
        RelevanceMethod::Similarity => "similarity",
        RelevanceMethod::Judge => "judge",
        RelevanceMethod::Rerank => "rerank",
    };
    let to_batch = |rows: &[(u64, i64, f32)]| {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2 >= threshold)))),
            Arc::new(StringArray::from(vec![method_name; rows.len()])),
        ];
        Ok(RecordBatch::try_new(sink.schema.clone(), columns)?)
    };
    let in_flight = client.as_ref().map_or(64, |c| c.concurrency().limit() * 2);
    let counts =
        run_parts(&sink, pairs, 4096, in_flight, process, to_batch, |c| bar.update(c.rows_in, client.as_deref()))
            .await?;
    bar.finish(format!("{} pairs scored, {} failed", counts.rows_out, counts.rows_failed));
    Ok(counts)
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
            kind: "unparsable_judgement".into(),
            message: format!("judge answered {:?}, neither yes nor no", crate::stages::preview(&reply.content)),
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
        None => Err(("invalid_response".to_string(), "rerank reply has no results[0].relevance_score".to_string())),
    };
    let reply =
        client.post("rerank", "/rerank", &body, (pair.query.len() + pair.title.len()) as u32 / 4, check).await?;
    Ok(reply.body["results"][0]["relevance_score"].as_f64().unwrap_or(0.0) as f32)
}
