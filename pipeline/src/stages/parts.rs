//! What every streaming stage shares: input units flow through an async `process` with many in
//! flight (in order), results are grouped into numbered parts, and each part is committed as
//! `failures` part → stats sidecar → output part (the rename of the output part is the commit).
//! On resume, units of committed parts are skipped and their counts read back from the sidecars,
//! so a killed stage redoes only uncommitted parts (and their requests hit the response cache).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::parquet_out::ParquetFile;

/// A row that failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    pub key: String,
    pub error_kind: String,
    pub message: String,
    pub attempts: i32,
}

/// What processing one unit of input produced.
#[derive(Debug)]
pub struct UnitResult<T> {
    /// Input rows in the unit.
    pub inputs: u64,
    /// Output rows (any number per input row).
    pub rows: Vec<T>,
    /// Input rows that passed (produced output).
    pub passed: u64,
    pub filtered: BTreeMap<String, u64>,
    pub failed: Vec<FailureRow>,
}

impl<T> UnitResult<T> {
    pub fn new(inputs: u64) -> Self {
        Self { inputs, rows: Vec::new(), passed: 0, filtered: BTreeMap::new(), failed: Vec::new() }
    }

    pub fn filter(&mut self, reason: &str) {
        *self.filtered.entry(reason.to_string()).or_default() += 1;
    }
}

/// Funnel counts of a stage (sums of its parts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_written: u64,
    pub filtered: BTreeMap<String, u64>,
    pub rows_failed: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.rows_in += other.rows_in;
        self.rows_out += other.rows_out;
        self.rows_written += other.rows_written;
        self.rows_failed += other.rows_failed;
        for (k, v) in &other.filtered {
            *self.filtered.entry(k.clone()).or_default() += v;
        }
    }
}

/// Where one stage writes.
pub struct PartSink {
    pub stage: &'static str,
    pub dir: PathBuf,
    pub failures_dir: PathBuf,
    pub schema: SchemaRef,
}

impl PartSink {
    pub fn new(ctx: &super::StageCtx, stage: &'static str, table: &'static str) -> Result<Self, Error> {
        let dir = ctx.table_dir(table);
        let failures_dir = ctx.failures_dir(stage);
        for d in [&dir, &failures_dir] {
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        let schema = lrem_schemas::table(table)?.schema();
        Ok(Self { stage, dir, failures_dir, schema })
    }

    fn part(&self, index: usize) -> PathBuf {
        self.dir.join(format!("part-{index:05}.parquet"))
    }

    fn sidecar(&self, index: usize) -> PathBuf {
        self.dir.join(format!("_part-{index:05}.json"))
    }

    /// Parts committed by an earlier attempt, with their counts.
    pub fn committed(&self) -> Result<BTreeMap<usize, Counts>, Error> {
        let mut done = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(index) =
                name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")).and_then(|n| n.parse().ok())
            else {
                continue;
            };
            let sidecar = self.sidecar(index);
            let bytes = std::fs::read(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
            let counts =
                serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("{}: {e}", sidecar.display())))?;
            done.insert(index, counts);
        }
        Ok(done)
    }

    /// Commits one part: failures, then counts, then the output part (the commit point).
    pub fn commit(
        &self,
        index: usize,
        batch: &RecordBatch,
        failures: &[FailureRow],
        counts: &Counts,
    ) -> Result<(), Error> {
        let failures_path = self.failures_dir.join(format!("part-{index:05}.parquet"));
        write_failures(&failures_path, self.stage, failures)?;
        let sidecar = self.sidecar(index);
        let temp = self.dir.join(format!(".part-{index:05}.json.tmp"));
        std::fs::write(&temp, serde_json::to_vec(counts).expect("counts serialise"))
            .map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, &sidecar).map_err(|e| Error::io(&sidecar, e))?;
        let mut out = ParquetFile::create(&self.part(index), self.schema.clone())?;
        out.write(batch)?;
        out.finish()
    }
}

fn write_failures(path: &Path, stage: &str, rows: &[FailureRow]) -> Result<(), Error> {
    let schema = lrem_schemas::table("failures")?.schema();
    let now = crate::client::now_ms();
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![stage; n])),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.key.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.error_kind.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.message.as_str()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempts))),
        Arc::new(TimestampMillisecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    let mut out = ParquetFile::create(path, schema.clone())?;
    out.write(&RecordBatch::try_new(schema, columns)?)?;
    out.finish()
}

/// Runs `process` over `units` (at most `in_flight` at once, results in input order), committing
/// a part every `units_per_part` units. Units of parts already committed are not processed.
pub async fn run_parts<U, T, Fut>(
    sink: &PartSink,
    units: impl Stream<Item = Result<U, Error>>,
    units_per_part: usize,
    in_flight: usize,
    process: impl Fn(U) -> Fut,
    to_batch: impl Fn(&[T]) -> Result<RecordBatch, Error>,
    on_progress: impl Fn(&Counts),
) -> Result<Counts, Error>
where
    Fut: Future<Output = Result<UnitResult<T>, Error>>,
{
    let committed = sink.committed()?;
    let done: BTreeSet<usize> = committed.keys().copied().collect();
    let mut total = Counts::default();
    committed.values().for_each(|c| total.add(c));
    on_progress(&total);
    let todo = units.enumerate().filter_map(|(i, u)| {
        let part = i / units_per_part;
        futures::future::ready((!done.contains(&part)).then_some(u.map(|u| (part, u))))
    });
    let process = &process;
    let results =
        todo.map_ok(|(part, u)| async move { process(u).await.map(|r| (part, r)) }).try_buffered(in_flight.max(1));
    futures::pin_mut!(results);
    let mut current: Option<(usize, Vec<T>, Vec<FailureRow>, Counts)> = None;
    while let Some((part, result)) = results.try_next().await? {
        if current.as_ref().is_some_and(|(p, ..)| *p != part) {
            let (p, rows, failures, counts) = current.take().expect("checked");
            sink.commit(p, &to_batch(&rows)?, &failures, &counts)?;
        }
        let (_, rows, failures, counts) =
            current.get_or_insert_with(|| (part, Vec::new(), Vec::new(), Counts::default()));
        let unit_counts = Counts {
            rows_in: result.inputs,
            rows_out: result.passed,
            rows_written: result.rows.len() as u64,
            filtered: result.filtered,
            rows_failed: result.failed.len() as u64,
        };
        counts.add(&unit_counts);
        total.add(&unit_counts);
        rows.extend(result.rows);
        failures.extend(result.failed);
        on_progress(&total);
    }
    if let Some((p, rows, failures, counts)) = current {
        sink.commit(p, &to_batch(&rows)?, &failures, &counts)?;
    }
    Ok(total)
}
