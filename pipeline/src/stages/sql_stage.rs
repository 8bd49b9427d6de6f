//! Relational stages: SQL text from `sql/stages/`, rendered with the config's thresholds (numbers
//! only; pattern regexes are quoted), run by DataFusion, streamed into Parquet parts.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, new_null_array};
use arrow::compute::kernels::boolean::not;
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::DataFrame;
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
    // One pass: every verdict is counted and the hard rows written as the judged rows stream by
    // (a count query and then a filtered write would evaluate the mining query twice).
    let frame = ctx.tables.frame(&sql).await?;
    let partitions = per_partition(frame, |partition, mut stream| {
        let mut out = TableWriter::create(ctx, "hard_queries", partition)?;
        Ok(async move {
            let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let verdict = cast(batch.column_by_name("verdict").expect("the SQL names `verdict`"), &DataType::Utf8)?;
                let verdict = verdict.as_string::<i32>();
                for v in verdict.iter().flatten() {
                    match verdicts.get_mut(v) {
                        Some(n) => *n += 1,
                        None => _ = verdicts.insert(v.to_string(), 1),
                    }
                }
                out.write(&filter_record_batch(&batch, &eq(verdict, &StringArray::new_scalar("hard"))?)?)?;
            }
            Ok((verdicts, out.finish()?))
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

pub async fn gain(ctx: &StageCtx) -> Result<Counts, Error> {
    let only = ctx.shard_filter("r2.query_id");
    let rows_in = super::count_rows(ctx, &format!("select count(*) from retrieval_2 r2 where {only}")).await?;
    let sql = render(GAIN_SQL, json!({ "shard_filter": only, "shard_filter_1": ctx.shard_filter("query_id") }))?;
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
                all.write(&batch)?;
                rl.write(&filter_record_batch(&batch, &to_rl)?)?;
                cold_start.write(&filter_record_batch(&batch, &not(&to_rl)?)?)?;
            }
            cold_start.finish()?;
            rl.finish()?;
            all.finish()
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

/// Streams `frame` into `tables/<table>/part-*.parquet` in the table's schema.
pub async fn write_table(ctx: &StageCtx, frame: DataFrame, table: &'static str) -> Result<u64, Error> {
    let written = per_partition(frame, |partition, mut stream| {
        let mut out = TableWriter::create(ctx, table, partition)?;
        Ok(async move {
            while let Some(batch) = stream.next().await {
                out.write(&batch?)?;
            }
            out.finish()
        })
    })
    .await?;
    Ok(written.into_iter().sum())
}

/// Runs `consume` on each output partition of `frame` as its own task, so that what the stage
/// does with the rows (Parquet encoding above all) runs on every core, not on one.
async fn per_partition<T, F, Fut>(frame: DataFrame, mut consume: F) -> Result<Vec<T>, Error>
where
    T: Send + 'static,
    F: FnMut(usize, SendableRecordBatchStream) -> Result<Fut, Error>,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for (partition, stream) in frame.execute_stream_partitioned().await?.into_iter().enumerate() {
        tasks.spawn(consume(partition, stream)?);
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.map_err(|e| Error::Internal(format!("a partition's task failed: {e}")))??);
    }
    Ok(results)
}

/// A stage table (or one partition of it) being written: Parquet parts of at most [`PART_ROWS`]
/// rows in the table's schema. The first part exists even when no row comes, so an empty table is
/// still a table.
struct TableWriter {
    table: &'static str,
    dir: std::path::PathBuf,
    schema: SchemaRef,
    file: ParquetFile,
    partition: usize,
    part: usize,
    rows_in_part: usize,
    written: u64,
}

impl TableWriter {
    fn create(ctx: &StageCtx, table: &'static str, partition: usize) -> Result<Self, Error> {
        let dir = ctx.table_dir(table);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let schema = lrem_schemas::table(table)?.schema();
        let file = ParquetFile::create(&dir.join(Self::name(partition, 0)), schema.clone())?;
        Ok(Self { table, dir, schema, file, partition, part: 0, rows_in_part: 0, written: 0 })
    }

    fn name(partition: usize, part: usize) -> String {
        format!("part-{partition:03}-{part:05}.parquet")
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(batch, &self.schema, self.table)?;
        if self.rows_in_part >= PART_ROWS {
            self.part += 1;
            let next = ParquetFile::create(&self.dir.join(Self::name(self.partition, self.part)), self.schema.clone())?;
            std::mem::replace(&mut self.file, next).finish()?;
            self.rows_in_part = 0;
        }
        self.rows_in_part += batch.num_rows();
        self.written += batch.num_rows() as u64;
        self.file.write(&batch)
    }

    fn finish(self) -> Result<u64, Error> {
        self.file.finish()?;
        Ok(self.written)
    }
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
