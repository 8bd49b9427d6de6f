//! Stage `item_embeddings`: every title of the catalogue embedded by the existing retriever.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Builder, Int64Array, ListBuilder, RecordBatch};
use arrow::datatypes::Schema;
use lrem_schemas::config::PipelineConfig;
use serde_json::json;

use super::columns::{i64s, list_item_field, strings};
use super::prompts::Prompts;
use super::stage::{Counts, Scope, StageCtx};
use super::streaming::{Rows, Streaming, UnitResult};
use crate::Error;
use crate::client::ModelClient;

pub struct ItemEmbeddings;

pub struct Item {
    item_id: i64,
    title: String,
}

pub struct Embedded {
    item_id: i64,
    embedding: Vec<f32>,
}

impl Streaming for ItemEmbeddings {
    const NAME: &'static str = "item_embeddings";
    const UPSTREAM: &'static [&'static str] = &[];
    const SCOPE: Scope = Scope::PerItem;
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/item_embeddings.sql");
    /// Embedding requests per part (so a part holds `batch_size × 64` items).
    const UNITS_PER_PART: usize = 64;
    type Input = Item;
    type Output = Embedded;
    type State = Arc<ModelClient>;

    fn endpoints(config: &PipelineConfig) -> Vec<String> {
        vec![config.stages.retrieval.endpoint.clone()]
    }

    fn settings(config: &PipelineConfig, _: &Prompts) -> serde_json::Value {
        // The batch size sets which items each committed part holds, so a resumed attempt must
        // share it.
        let s = &config.stages.retrieval;
        json!({ "items": config.inputs.items, "model": config.model_of(&s.endpoint), "batch_size": s.batch_size })
    }

    fn read(batch: &RecordBatch) -> Result<Vec<Item>, Error> {
        let rows = i64s(batch, "item_id")?.into_iter().zip(strings(batch, "title")?);
        Ok(rows.map(|(item_id, title)| Item { item_id, title }).collect())
    }

    async fn prepare(ctx: &StageCtx) -> Result<Arc<ModelClient>, Error> {
        ctx.client(&ctx.config.stages.retrieval.endpoint)
    }

    fn unit_size(ctx: &StageCtx) -> usize {
        ctx.config.stages.retrieval.batch_size as usize
    }

    fn client(state: &Arc<ModelClient>) -> Option<&ModelClient> {
        Some(state)
    }

    async fn process(client: &Arc<ModelClient>, unit: Vec<Item>) -> Result<UnitResult<Embedded>, Error> {
        let mut result = UnitResult::new(unit.len() as u64);
        let titles: Vec<String> = unit.iter().map(|i| i.title.clone()).collect();
        let embedded = client.embed(&titles).await.map(|(vectors, _)| {
            let rows = unit.iter().zip(vectors).map(|(i, embedding)| Embedded { item_id: i.item_id, embedding });
            (unit.len() as u64, rows.collect())
        });
        result.settle(embedded, &client.name, unit.iter().map(|i| i.item_id.to_string()))?;
        Ok(result)
    }

    fn summary(_: Arc<ModelClient>, counts: &Counts) -> String {
        format!("{} items embedded, {} failed", counts.rows_out, counts.rows_failed)
    }
}

impl Rows for Embedded {
    fn columns(rows: &[Self], schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error> {
        let mut list = ListBuilder::new(Float32Builder::new()).with_field(list_item_field(schema, "embedding")?);
        for row in rows {
            list.append_value(row.embedding.iter().map(|x| Some(*x)));
        }
        Ok(vec![
            ("item_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.item_id)))),
            ("embedding", Arc::new(list.finish())),
        ])
    }
}
