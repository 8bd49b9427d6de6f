//! Relational stages: SQL text from `sql/stages/`, rendered with the config's thresholds (numbers
//! only; pattern regexes are quoted), run by DataFusion, streamed into Parquet parts.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use datafusion::prelude::{DataFrame, col, lit};
use futures::StreamExt;
use serde_json::json;

use super::{Counts, StageCtx, render};
use crate::Error;
use crate::parquet_out::ParquetFile;

const QUERIES_SQL: &str = include_str!("../../../sql/stages/queries.sql");
const HARD_QUERIES_SQL: &str = include_str!("../../../sql/stages/hard_queries.sql");
const GAIN_SQL: &str = include_str!("../../../sql/stages/gain.sql");
const TRIPLES_SQL: &str = include_str!("../../../sql/stages/triples.sql");

/// Rows per Parquet part of a SQL stage.
const PART_ROWS: usize = 1 << 20;

pub async fn queries(ctx: &StageCtx) -> Result<Counts, Error> {
    let log_rows = super::count_rows(ctx, "select count(*) from query_log").await?;
    let written = write_table(ctx, ctx.tables.frame(QUERIES_SQL).await?, "queries").await?;
    Ok(Counts { rows_in: log_rows, rows_out: log_rows, rows_written: written, ..Counts::default() })
}

pub async fn hard_queries(ctx: &StageCtx) -> Result<Counts, Error> {
    let m = &ctx.config.stages.mining;
    let sql = render(
        HARD_QUERIES_SQL,
        json!({
            "min_days": m.min_days, "min_impressions": m.min_impressions, "max_ctr": m.max_ctr,
            "min_missed_items": m.min_missed_items, "min_missed_share": m.min_missed_share,
            "max_queries": m.max_queries,
            "pattern_case": pattern_case(&m.patterns),
        }),
    )?;
    let judged = ctx.tables.frame(&sql).await?;
    let mut counts = Counts::default();
    let verdicts = judged
        .clone()
        .aggregate(vec![col("verdict")], vec![datafusion::functions_aggregate::count::count(lit(1)).alias("n")])?;
    for batch in verdicts.collect().await? {
        let names = cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let names = names.as_any().downcast_ref::<arrow::array::StringArray>().expect("utf8");
        let n = batch.column(1).as_any().downcast_ref::<arrow::array::Int64Array>().expect("count is int64");
        for i in 0..batch.num_rows() {
            let (verdict, rows) = (names.value(i).to_string(), n.value(i) as u64);
            counts.rows_in += rows;
            if verdict == "hard" {
                counts.rows_out += rows;
            } else {
                counts.filtered.insert(verdict, rows);
            }
        }
    }
    let hard = judged.filter(col("verdict").eq(lit("hard")))?;
    counts.rows_written = write_table(ctx, hard, "hard_queries").await?;
    Ok(counts)
}

/// `CASE WHEN regexp_like(query, '…') THEN 'name' … END`, or NULL without priors.
fn pattern_case(patterns: &std::collections::BTreeMap<String, String>) -> String {
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

pub async fn gain(ctx: &StageCtx) -> Result<Counts, Error> {
    let only = ctx.shard_filter("r2.query_id");
    let rows_in = super::count_rows(ctx, &format!("select count(*) from retrieval_2 r2 where {only}")).await?;
    let sql = render(GAIN_SQL, json!({ "shard_filter": only }))?;
    let written = write_table(ctx, ctx.tables.frame(&sql).await?, "gain").await?;
    let mut counts = Counts { rows_in, rows_out: written, rows_written: written, ..Counts::default() };
    counts.filtered.insert("already_in_set_1".into(), rows_in - written);
    Ok(counts)
}

pub async fn triples(ctx: &StageCtx) -> Result<Counts, Error> {
    let split = &ctx.config.stages.split;
    let only = ctx.shard_filter("r.query_id");
    let sql =
        render(TRIPLES_SQL, json!({ "seed": split.seed, "rl_fraction": split.rl_fraction, "shard_filter": only }))?;
    let rows_in = super::count_rows(ctx, &format!("select count(*) from relevance r where {only}")).await?;
    let relevant =
        super::count_rows(ctx, &format!("select count(*) from relevance r where r.relevant and {only}")).await?;
    let all = ctx.tables.frame(&sql).await?;
    let written = write_table(ctx, all.clone(), "triples").await?;
    if written != relevant {
        return Err(Error::Internal(format!(
            "{relevant} relevant pairs but {written} triples: a pair lost its query or item"
        )));
    }
    write_table(ctx, all.clone().filter(col("rl").eq(lit(false)))?, "triples_cold_start").await?;
    write_table(ctx, all.filter(col("rl"))?, "triples_rl").await?;
    let mut counts = Counts { rows_in, rows_out: relevant, rows_written: written, ..Counts::default() };
    counts.filtered.insert("below_threshold".into(), rows_in - relevant);
    Ok(counts)
}

/// Streams `frame` into `tables/<table>/part-*.parquet` in the table's schema.
pub async fn write_table(ctx: &StageCtx, frame: DataFrame, table: &'static str) -> Result<u64, Error> {
    let dir = ctx.table_dir(table);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let schema = lrem_schemas::table(table)?.schema();
    let mut stream = frame.execute_stream().await?;
    let (mut part, mut rows_in_part, mut written) = (0, 0, 0u64);
    let mut out = ParquetFile::create(&dir.join(format!("part-{part:05}.parquet")), schema.clone())?;
    while let Some(batch) = stream.next().await {
        let batch = conform(&batch?, &schema, table)?;
        if rows_in_part >= PART_ROWS {
            out.finish()?;
            part += 1;
            rows_in_part = 0;
            out = ParquetFile::create(&dir.join(format!("part-{part:05}.parquet")), schema.clone())?;
        }
        rows_in_part += batch.num_rows();
        written += batch.num_rows() as u64;
        out.write(&batch)?;
    }
    out.finish()?;
    Ok(written)
}

/// Casts a result batch to the table's schema (column order, types, nullability).
pub fn conform(batch: &RecordBatch, schema: &SchemaRef, table: &str) -> Result<RecordBatch, Error> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(c) => cast(c, field.data_type())?,
            None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
            None => return Err(Error::Internal(format!("{table}: the stage produced no column {}", field.name()))),
        };
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(Error::Internal(format!(
                "{table}.{}: {} nulls in a non-null column",
                field.name(),
                column.null_count()
            )));
        }
        columns.push(column);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
