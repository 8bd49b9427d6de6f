//! Stage `gain`: set ② minus set ①, the items the CoT brought in (`sql/stages/gain.sql`).

use lrem_schemas::config::PipelineConfig;
use serde_json::json;

use super::prompts::Prompts;
use super::relational::write_table;
use super::stage::{Counts, Stage, StageCtx};
use crate::Error;

pub struct Gain;

#[async_trait::async_trait(?Send)]
impl Stage for Gain {
    fn name(&self) -> &'static str {
        "gain"
    }

    fn upstream(&self) -> &'static [&'static str] {
        &["retrieval_2", "retrieval_1"]
    }

    fn settings(&self, _: &PipelineConfig, _: &Prompts) -> serde_json::Value {
        json!({})
    }

    async fn run(&self, ctx: &StageCtx) -> Result<Counts, Error> {
        let only = ctx.shard_filter("query_id");
        let rows_in = ctx.count(&format!("select count(*) from retrieval_2 where {only}")).await?;
        let sql = ctx.sql(include_str!("../../../sql/stages/gain.sql"), json!({}))?;
        let written = write_table(ctx, ctx.tables.frame(&sql).await?, "gain").await?;
        let mut counts = Counts { rows_in, rows_out: written, rows_written: written, ..Counts::default() };
        counts.filtered.insert("already_in_set_1".into(), rows_in - written);
        Ok(counts)
    }
}
