//! What the relational stages share: a DataFusion plan's output partitions streamed, each by its
//! own task, into Parquet parts in the table's schema.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use lrem_schemas::Part;
use lrem_schemas::store::Storage;

use super::stage::{Journal, StageCtx};
use crate::Error;
use crate::parquet_out::PartFile;

/// Rows per Parquet part of a SQL stage.
const PART_ROWS: usize = 1 << 20;

/// Streams `frame` into `tables/<table>/part-*.parquet` in the table's schema.
pub async fn write_table(ctx: &StageCtx, frame: DataFrame, table: &'static str) -> Result<u64, Error> {
    let written = per_partition(frame, |partition, mut stream| {
        let mut out = TableWriter::create(ctx, table, partition)?;
        Ok(async move {
            while let Some(batch) = stream.next().await {
                out.write(&batch?).await?;
            }
            out.finish().await
        })
    })
    .await?;
    Ok(written.into_iter().sum())
}

/// Runs `consume` on each output partition of `frame` as its own task, so that what the stage
/// does with the rows (Parquet encoding above all) runs on every core, not on one.
pub async fn per_partition<T, F, Fut>(frame: DataFrame, mut consume: F) -> Result<Vec<T>, Error>
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
pub struct TableWriter {
    table: &'static str,
    dir: String,
    schema: SchemaRef,
    file: PartFile,
    partition: usize,
    part: usize,
    rows_in_part: usize,
    written: u64,
    attempt: String,
    storage: Arc<Storage>,
    journal: Arc<Journal>,
}

impl TableWriter {
    pub fn create(ctx: &StageCtx, table: &'static str, partition: usize) -> Result<Self, Error> {
        let dir = ctx.table_dir(table);
        let schema = lrem_schemas::table(table)?.schema();
        let path = format!("{dir}/{}", Part { writer: partition, seq: 0 }.file_name_of(&ctx.attempt));
        let file = PartFile::create(&ctx.storage, table, path, schema.clone())?;
        Ok(Self {
            table,
            dir,
            schema,
            file,
            partition,
            part: 0,
            rows_in_part: 0,
            written: 0,
            attempt: ctx.attempt.clone(),
            storage: ctx.storage.clone(),
            journal: ctx.journal.clone(),
        })
    }

    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(batch, &self.schema, self.table)?;
        if self.rows_in_part >= PART_ROWS {
            self.part += 1;
            let part = Part { writer: self.partition, seq: self.part };
            let path = format!("{}/{}", self.dir, part.file_name_of(&self.attempt));
            let next = PartFile::create(&self.storage, self.table, path, self.schema.clone())?;
            self.journal.record(std::mem::replace(&mut self.file, next).finish().await?);
            self.rows_in_part = 0;
        }
        self.rows_in_part += batch.num_rows();
        self.written += batch.num_rows() as u64;
        self.file.write(&batch)
    }

    pub async fn finish(self) -> Result<u64, Error> {
        self.journal.record(self.file.finish().await?);
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
