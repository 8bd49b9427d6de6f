//! Stage `triples`: the relevant pairs with their query, CoT and item (`sql/stages/triples.sql`),
//! written once whole and once split by query into the cold-start and RL tables.

use arrow::array::AsArray;
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::boolean::not;
use futures::StreamExt;
use lrem_schemas::config::PipelineConfig;
use serde_json::json;

use super::prompts::Prompts;
use super::relational::{TableWriter, per_partition};
use super::stage::{Counts, Stage, StageCtx};
use crate::Error;

pub struct Triples;

#[async_trait::async_trait(?Send)]
impl Stage for Triples {
    fn name(&self) -> &'static str {
        "triples"
    }

    fn upstream(&self) -> &'static [&'static str] {
        &["relevance"]
    }

    fn tables(&self) -> Vec<&'static str> {
        vec!["triples", "triples_cold_start", "triples_rl"]
    }

    fn settings(&self, config: &PipelineConfig, _: &Prompts) -> serde_json::Value {
        json!({ "items": config.inputs.items, "split": config.stages.split, "threshold": config.stages.relevance.threshold })
    }

    async fn run(&self, ctx: &StageCtx) -> Result<Counts, Error> {
        let split = &ctx.config.stages.split;
        let only = ctx.shard_filter("r.query_id");
        let sql = ctx.sql(
            include_str!("../../../sql/stages/triples.sql"),
            json!({ "seed": split.seed, "rl_fraction": split.rl_fraction }),
        )?;
        let rows_in = ctx.count(&format!("select count(*) from relevance r where {only}")).await?;
        let relevant = ctx.count(&format!("select count(*) from relevance r where r.relevant and {only}")).await?;
        // One pass over the join: each batch goes to `triples` and, split by `rl`, to one of the two.
        let frame = ctx.tables.frame(&sql).await?;
        let partitions = per_partition(frame, |partition, mut stream| {
            let mut all = TableWriter::create(ctx, "triples", partition)?;
            let mut cold_start = TableWriter::create(ctx, "triples_cold_start", partition)?;
            let mut rl = TableWriter::create(ctx, "triples_rl", partition)?;
            Ok(async move {
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let to_rl = batch.column_by_name("rl").expect("the SQL names `rl`").as_boolean().clone();
                    all.write(&batch).await?;
                    rl.write(&filter_record_batch(&batch, &to_rl)?).await?;
                    cold_start.write(&filter_record_batch(&batch, &not(&to_rl)?)?).await?;
                }
                cold_start.finish().await?;
                rl.finish().await?;
                all.finish().await
            })
        })
        .await?;
        let written: u64 = partitions.into_iter().sum();
        if written != relevant {
            return Err(Error::Internal(format!(
                "{relevant} relevant pairs but {written} triples: a pair lost its query or item"
            )));
        }
        let mut counts = Counts { rows_in, rows_out: relevant, rows_written: written, ..Counts::default() };
        counts.filtered.insert("below_threshold".into(), rows_in - relevant);
        Ok(counts)
    }
}
