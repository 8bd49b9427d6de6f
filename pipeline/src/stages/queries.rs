//! Stage `queries`: the query log aggregated per normalised query (`sql/stages/queries.sql`).

use lrem_schemas::config::PipelineConfig;
use serde_json::json;

use super::prompts::Prompts;
use super::relational::write_table;
use super::stage::{Counts, Scope, Stage, StageCtx};
use crate::Error;

pub struct Queries;

#[async_trait::async_trait(?Send)]
impl Stage for Queries {
    fn name(&self) -> &'static str {
        "queries"
    }

    fn upstream(&self) -> &'static [&'static str] {
        &[]
    }

    fn settings(&self, config: &PipelineConfig, _: &Prompts) -> serde_json::Value {
        json!({ "query_log": config.inputs.query_log })
    }

    fn scope(&self) -> Scope {
        Scope::Once
    }

    async fn run(&self, ctx: &StageCtx) -> Result<Counts, Error> {
        let log_rows = ctx.count("select count(*) from query_log").await?;
        let sql = include_str!("../../../sql/stages/queries.sql");
        let written = write_table(ctx, ctx.tables.frame(sql).await?, "queries").await?;
        Ok(Counts { rows_in: log_rows, rows_out: log_rows, rows_written: written, ..Counts::default() })
    }
}
