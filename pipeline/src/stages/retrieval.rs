//! What retrieval sets ① and ② share: the item index, built from `item_embeddings`, and the
//! top-K search of each query's text. The two stages differ only in their input query.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::Schema;
use futures::StreamExt;
use lrem_schemas::config::{IndexKind, PipelineConfig};
use serde_json::json;

use super::columns::{f32_lists, i64s, strings, u64s};
use super::prompts::Prompts;
use super::stage::{Counts, Scope, StageCtx};
use super::streaming::{Rows, Streaming, UnitResult};
use crate::Error;
use crate::client::ModelClient;
use crate::index::{ExactIndex, HnswIndex, Index};

/// One retrieval set: its name, what it reads, and its input query.
pub trait RetrievalSet: Sync {
    const NAME: &'static str;
    const UPSTREAM: &'static [&'static str];
    const SCOPE: Scope;
    /// Rows `query_id, query, cot`; the text searched is the query, then the CoT if any.
    const INPUT_SQL: &'static str;
}

pub struct Retrieval<S>(pub PhantomData<S>);

pub struct Search {
    query_id: u64,
    text: String,
}

pub struct Hit {
    query_id: u64,
    item_id: i64,
    rank: i32,
    score: f32,
}

pub struct Searcher {
    client: Arc<ModelClient>,
    index: Arc<Index>,
    k: usize,
}

impl<S: RetrievalSet> Streaming for Retrieval<S> {
    const NAME: &'static str = S::NAME;
    const UPSTREAM: &'static [&'static str] = S::UPSTREAM;
    const SCOPE: Scope = S::SCOPE;
    const INPUT_SQL: &'static str = S::INPUT_SQL;
    /// Embedding requests per part (so a part holds `batch_size × 64` queries).
    const UNITS_PER_PART: usize = 64;
    type Input = Search;
    type Output = Hit;
    type State = Searcher;

    fn endpoints(config: &PipelineConfig) -> Vec<String> {
        vec![config.stages.retrieval.endpoint.clone()]
    }

    fn settings(config: &PipelineConfig, _: &Prompts) -> serde_json::Value {
        let s = &config.stages.retrieval;
        // `batch_size` sets which queries each committed part holds (a resumed attempt must share it).
        json!({
            "k": s.k, "index": s.index, "ef_search": s.ef_search, "model": config.model_of(&s.endpoint),
            "batch_size": s.batch_size,
        })
    }

    fn read(batch: &RecordBatch) -> Result<Vec<Search>, Error> {
        let texts = strings(batch, "query")?
            .into_iter()
            .zip(strings(batch, "cot")?)
            .map(|(q, c)| if c.is_empty() { q } else { format!("{q}, {c}") });
        Ok(u64s(batch, "query_id")?.into_iter().zip(texts).map(|(query_id, text)| Search { query_id, text }).collect())
    }

    async fn prepare(ctx: &StageCtx) -> Result<Searcher, Error> {
        let settings = &ctx.config.stages.retrieval;
        Ok(Searcher { client: ctx.client(&settings.endpoint)?, index: load_index(ctx).await?, k: settings.k as usize })
    }

    fn unit_size(ctx: &StageCtx) -> usize {
        ctx.config.stages.retrieval.batch_size as usize
    }

    fn client(state: &Searcher) -> Option<&ModelClient> {
        Some(&state.client)
    }

    async fn process(state: &Searcher, unit: Vec<Search>) -> Result<UnitResult<Hit>, Error> {
        let mut result = UnitResult::new(unit.len() as u64);
        let texts: Vec<String> = unit.iter().map(|s| s.text.clone()).collect();
        let hits = match state.client.embed(&texts).await {
            Ok((vectors, _)) => {
                let (index, k) = (state.index.clone(), state.k);
                let hits = tokio::task::spawn_blocking(move || index.search(&vectors, k))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?;
                let rows = unit.iter().zip(hits).flat_map(|(search, hits)| {
                    hits.into_iter().enumerate().map(move |(rank, h)| Hit {
                        query_id: search.query_id,
                        item_id: h.item_id,
                        rank: rank as i32 + 1,
                        score: h.score,
                    })
                });
                Ok((unit.len() as u64, rows.collect()))
            }
            Err(e) => Err(e),
        };
        result.settle(hits, &state.client.name, unit.iter().map(|s| s.query_id.to_string()))?;
        Ok(result)
    }

    fn summary(_: Searcher, counts: &Counts) -> String {
        format!("{} queries, {} pairs", counts.rows_out, counts.rows_written)
    }
}

impl Rows for Hit {
    fn columns(rows: &[Self], _: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error> {
        Ok(vec![
            ("query_id", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id)))),
            ("item_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.item_id)))),
            ("rank", Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.rank)))),
            ("score", Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score)))),
        ])
    }
}

/// The item index, from the `item_embeddings` table.
async fn load_index(ctx: &StageCtx) -> Result<Arc<Index>, Error> {
    let sql = "select item_id, embedding from item_embeddings order by item_id";
    let mut stream = ctx.tables.frame(sql).await?.execute_stream().await?;
    let mut index: Option<ExactIndex> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        for (id, vector) in i64s(&batch, "item_id")?.into_iter().zip(f32_lists(&batch, "embedding")?) {
            let index = index.get_or_insert_with(|| ExactIndex::new(vector.len()));
            index.add(id, &vector).map_err(|e| Error::Usage(format!("item_embeddings: {e}")))?;
        }
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
