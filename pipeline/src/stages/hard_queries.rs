//! Stage `hard_queries`: the queries the existing retriever fails (`sql/stages/hard_queries.sql`),
//! each verdict counted: `hard`, or the first rule a query misses.

use arrow::array::AsArray;
use std::collections::BTreeMap;

use arrow::array::StringArray;
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use futures::StreamExt;
use lrem_schemas::config::PipelineConfig;
use serde_json::json;

use super::prompts::Prompts;
use super::relational::{TableWriter, per_partition};
use super::stage::{Counts, Scope, Stage, StageCtx};
use crate::Error;

pub struct HardQueries;

#[async_trait::async_trait(?Send)]
impl Stage for HardQueries {
    fn name(&self) -> &'static str {
        "hard_queries"
    }

    fn upstream(&self) -> &'static [&'static str] {
        &["queries", "retrieval_1"]
    }

    fn settings(&self, config: &PipelineConfig, _: &Prompts) -> serde_json::Value {
        json!({ "mining": config.stages.mining, "k": config.stages.retrieval.k })
    }

    fn scope(&self) -> Scope {
        Scope::Once
    }

    async fn run(&self, ctx: &StageCtx) -> Result<Counts, Error> {
        let m = &ctx.config.stages.mining;
        let sql = ctx.sql(
            include_str!("../../../sql/stages/hard_queries.sql"),
            json!({
                "min_days": m.min_days, "min_impressions": m.min_impressions, "max_ctr": m.max_ctr,
                "min_missed_items": m.min_missed_items, "min_missed_share": m.min_missed_share,
                "max_queries": m.max_queries,
                "pattern_case": pattern_case(&m.patterns),
            }),
        )?;
        // One pass: every verdict is counted and the hard rows written as the judged rows stream by
        // (a count query and then a filtered write would evaluate the mining query twice).
        let frame = ctx.tables.frame(&sql).await?;
        let partitions = per_partition(frame, |partition, mut stream| {
            let mut out = TableWriter::create(ctx, "hard_queries", partition)?;
            Ok(async move {
                let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let verdict =
                        cast(batch.column_by_name("verdict").expect("the SQL names `verdict`"), &DataType::Utf8)?;
                    let verdict = verdict.as_string::<i32>();
                    for v in verdict.iter().flatten() {
                        match verdicts.get_mut(v) {
                            Some(n) => *n += 1,
                            None => _ = verdicts.insert(v.to_string(), 1),
                        }
                    }
                    out.write(&filter_record_batch(&batch, &eq(verdict, &StringArray::new_scalar("hard"))?)?).await?;
                }
                Ok((verdicts, out.finish().await?))
            })
        })
        .await?;
        let mut counts = Counts::default();
        for (verdict, rows) in partitions.iter().flat_map(|(verdicts, _)| verdicts) {
            counts.rows_in += rows;
            if verdict == "hard" {
                counts.rows_out += rows;
            } else {
                *counts.filtered.entry(verdict.clone()).or_default() += rows;
            }
        }
        counts.rows_written = partitions.iter().map(|(_, written)| written).sum();
        Ok(counts)
    }
}

/// `CASE WHEN regexp_like(query, '…') THEN 'name' … END`, or NULL without priors.
fn pattern_case(patterns: &BTreeMap<String, String>) -> String {
    if patterns.is_empty() {
        return "CAST(NULL AS VARCHAR)".into();
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let arms: Vec<String> = patterns
        .iter()
        .map(|(name, re)| format!("WHEN regexp_like(q.query, {}) THEN {}", quote(re), quote(name)))
        .collect();
    format!("CASE {} END", arms.join(" "))
}
