//! Streaming stages: a stage supplies its input query, how to read a row of it, `process` for a
//! unit of rows and the columns of its output rows ([`Streaming`]); [`run`] does the rest, once
//! for all of them: counting, progress, parts, the commit protocol, resume and the closing line.
//!
//! Units flow through `process` with many in flight (results kept in input order) and are grouped
//! into numbered parts. Each part is committed as `failures` part and output part, each under the
//! attempt's name, then a create-only part marker naming both with the part's counts (the commit
//! point; [`lrem_schemas::commit`]). On resume, units of committed parts are skipped and their
//! counts read back from the markers, so a killed stage redoes only uncommitted parts (and their
//! requests hit the response cache).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt};
use lrem_schemas::Part;
use lrem_schemas::commit::{self, FileEntry, PartCommit};
use lrem_schemas::config::PipelineConfig;

use super::prompts::Prompts;
use super::stage::{Counts, Scope, Stage, StageCtx};
use crate::Error;
use crate::client::{CallError, ErrorKind, ModelClient};
use crate::parquet_out::PartFile;

/// A stage that streams the rows of one SQL query through `process` into one table.
pub trait Streaming: Sync {
    const NAME: &'static str;
    const UPSTREAM: &'static [&'static str];
    const SCOPE: Scope = Scope::PerQuery;
    /// Its input query: a file of `sql/stages/`, rendered with [`StageCtx::sql`].
    const INPUT_SQL: &'static str;
    /// Units per committed part.
    const UNITS_PER_PART: usize;

    /// One row of the input query.
    type Input;
    /// One row of the stage's table.
    type Output: Rows;
    /// What `process` needs, made once per run of the stage (clients, an index, rules).
    type State;

    fn endpoints(_config: &PipelineConfig) -> Vec<String> {
        Vec::new()
    }

    fn settings(config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value;

    /// Reads the input rows of a batch, by column name.
    fn read(batch: &RecordBatch) -> Result<Vec<Self::Input>, Error>;

    fn prepare(ctx: &StageCtx) -> impl Future<Output = Result<Self::State, Error>>;

    /// Input rows per unit (one request of an embedding batch, say).
    fn unit_size(_ctx: &StageCtx) -> usize {
        1
    }

    /// The endpoint whose state the progress line shows and whose concurrency sets the number of
    /// units in flight.
    fn client(_state: &Self::State) -> Option<&ModelClient> {
        None
    }

    fn process(
        state: &Self::State,
        unit: Vec<Self::Input>,
    ) -> impl Future<Output = Result<UnitResult<Self::Output>, Error>>;

    /// The progress bar's closing line.
    fn summary(state: Self::State, counts: &Counts) -> String;
}

/// Output rows, as the columns of their table, each named.
pub trait Rows: Sized {
    fn columns(rows: &[Self], schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error>;
}

/// A unit struct standing for the stage `S` in the DAG.
pub struct Streamed<S>(pub S);

#[async_trait::async_trait(?Send)]
impl<S: Streaming> Stage for Streamed<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn upstream(&self) -> &'static [&'static str] {
        S::UPSTREAM
    }

    fn endpoints(&self, config: &PipelineConfig) -> Vec<String> {
        S::endpoints(config)
    }

    fn settings(&self, config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value {
        S::settings(config, prompts)
    }

    fn scope(&self) -> Scope {
        S::SCOPE
    }

    fn resumable(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &StageCtx) -> Result<Counts, Error> {
        run::<S>(ctx).await
    }
}

/// A row that failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    pub key: String,
    pub error_kind: ErrorKind,
    pub message: String,
    pub attempts: i32,
}

/// A failure of the whole run (fatal HTTP status: wrong model, bad key) or of one unit's rows.
pub fn failures_or_abort(
    endpoint: &str,
    error: CallError,
    keys: impl Iterator<Item = String>,
) -> Result<Vec<FailureRow>, Error> {
    if error.fatal {
        return Err(Error::Endpoint { endpoint: endpoint.to_string(), message: error.to_string() });
    }
    Ok(keys
        .map(|key| FailureRow {
            key,
            error_kind: error.kind,
            message: error.message.clone(),
            attempts: error.attempts as i32,
        })
        .collect())
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

    /// `rows` written for `passed` inputs, or each of `keys` failed (or the run aborted).
    pub fn settle(
        &mut self,
        outcome: Result<(u64, Vec<T>), CallError>,
        endpoint: &str,
        keys: impl Iterator<Item = String>,
    ) -> Result<(), Error> {
        match outcome {
            Ok((passed, rows)) => {
                self.passed += passed;
                self.rows.extend(rows);
            }
            Err(e) => self.failed.extend(failures_or_abort(endpoint, e, keys)?),
        }
        Ok(())
    }
}

/// Runs a streaming stage: its input query, counted; its units through `process`; its parts
/// committed; its closing line.
pub async fn run<S: Streaming>(ctx: &StageCtx) -> Result<Counts, Error> {
    let sql = ctx.sql(S::INPUT_SQL, serde_json::json!({}))?;
    let total = ctx.count(&format!("select count(*) from ({sql})")).await?;
    let state = S::prepare(ctx).await?;
    let bar = ctx.progress.stage(S::NAME, total);
    let rows = ctx.tables.frame(&sql).await?.execute_stream().await?.flat_map(|batch| {
        let rows: Vec<Result<S::Input, Error>> = match batch.map_err(Error::from).and_then(|b| S::read(&b)) {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(rows)
    });
    let units = rows.chunks(S::unit_size(ctx).max(1)).map(|chunk| chunk.into_iter().collect::<Result<Vec<_>, _>>());
    let sink = PartSink::new(ctx, S::NAME, S::NAME)?;
    let client = S::client(&state);
    let in_flight = client.map_or(64, |c| c.concurrency().limit() * 2);
    let counts = run_parts(
        &sink,
        units,
        S::UNITS_PER_PART,
        in_flight,
        |unit| S::process(&state, unit),
        |c| bar.update(c.rows_in, client),
    )
    .await?;
    for file in sink.files().await? {
        ctx.journal.record(file);
    }
    bar.finish(S::summary(state, &counts));
    Ok(counts)
}

/// The rows as a batch of `schema`, each column bound by name. A column the table lacks, a
/// missing non-null column or a type other than the table's is an error, never a silent cast.
pub fn batch_by_name<R: Rows>(table: &str, schema: &SchemaRef, rows: &[R]) -> Result<RecordBatch, Error> {
    let mut named: BTreeMap<&str, ArrayRef> = BTreeMap::new();
    for (name, column) in R::columns(rows, schema)? {
        if schema.field_with_name(name).is_err() {
            return Err(Error::Internal(format!("{table} has no column {name}")));
        }
        named.insert(name, column);
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match named.remove(field.name().as_str()) {
            Some(c) if c.data_type() == field.data_type() => c,
            Some(c) => {
                return Err(Error::Internal(format!(
                    "{table}.{}: built as {}, the table has {}",
                    field.name(),
                    c.data_type(),
                    field.data_type()
                )));
            }
            None if field.is_nullable() => arrow::array::new_null_array(field.data_type(), rows.len()),
            None => return Err(Error::Internal(format!("{table}: the stage built no column {}", field.name()))),
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Where one stage writes, and where its part markers go.
struct PartSink<'a> {
    ctx: &'a StageCtx,
    stage: &'static str,
    table: &'static str,
    dir: String,
    failures_dir: String,
    markers: String,
    schema: SchemaRef,
}

impl<'a> PartSink<'a> {
    fn new(ctx: &'a StageCtx, stage: &'static str, table: &'static str) -> Result<Self, Error> {
        let markers = ctx.run_dir.part_commits(stage, ctx.shard, &ctx.fingerprint);
        let schema = lrem_schemas::table(table)?.schema();
        Ok(Self {
            ctx,
            stage,
            table,
            dir: ctx.table_dir(table),
            failures_dir: ctx.failures_dir(stage),
            markers,
            schema,
        })
    }

    /// Parts committed by earlier (or concurrent) attempts at this fingerprint, by number.
    async fn committed(&self) -> Result<BTreeMap<usize, PartCommit>, Error> {
        let mut done = BTreeMap::new();
        for name in self.ctx.storage.children(&self.markers).await? {
            let Some(seq) = commit::part_commit_seq(&name) else { continue };
            let path = format!("{}/{name}", self.markers);
            if let Some(marker) = commit::read::<PartCommit>(&self.ctx.storage, &path).await? {
                done.insert(seq, marker);
            }
        }
        Ok(done)
    }

    /// Commits one part: its failures and its rows, each under this attempt's name, then the
    /// create-only marker that names both (the commit point). A part another attempt committed
    /// first keeps theirs; this attempt's files are left for `gc`.
    async fn commit<R: Rows>(
        &self,
        index: usize,
        rows: &[R],
        failures: &[FailureRow],
        counts: &Counts,
    ) -> Result<(), Error> {
        let batch = batch_by_name(self.table, &self.schema, rows)?;
        let part = Part { writer: 0, seq: index };
        let failed =
            write_failures(self.ctx, self.ctx.part_path(&self.failures_dir, part), self.stage, failures).await?;
        let mut out =
            PartFile::create(&self.ctx.storage, self.table, self.ctx.part_path(&self.dir, part), self.schema.clone())?;
        out.write(&batch)?;
        let written = out.finish().await?;
        let marker = PartCommit {
            attempt: self.ctx.attempt.clone(),
            files: vec![failed, written],
            counts: serde_json::to_value(counts).expect("counts serialise"),
        };
        let path = format!("{}/{}", self.markers, commit::part_commit_name(index));
        if !commit::create(&self.ctx.storage, &path, &marker).await? {
            tracing::info!(stage = self.stage, part = index, "part committed by another attempt first");
        }
        Ok(())
    }

    /// Every committed part's files, for the stage's marker.
    async fn files(&self) -> Result<Vec<FileEntry>, Error> {
        Ok(self.committed().await?.into_values().flat_map(|m| m.files).collect())
    }
}

async fn write_failures(ctx: &StageCtx, path: String, stage: &str, rows: &[FailureRow]) -> Result<FileEntry, Error> {
    let schema = lrem_schemas::table("failures")?.schema();
    let now = crate::client::now_ms();
    let n = rows.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![stage; n])),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.key.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.error_kind.to_string()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.message.as_str()))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempts))),
        Arc::new(TimestampMillisecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    let mut out = PartFile::create(&ctx.storage, "failures", path, schema.clone())?;
    out.write(&RecordBatch::try_new(schema, columns)?)?;
    out.finish().await
}

/// Runs `process` over `units` (at most `in_flight` at once, results in input order), committing
/// a part every `units_per_part` units. Units of parts already committed are not processed.
async fn run_parts<U, R: Rows, Fut>(
    sink: &PartSink<'_>,
    units: impl Stream<Item = Result<U, Error>>,
    units_per_part: usize,
    in_flight: usize,
    process: impl Fn(U) -> Fut,
    on_progress: impl Fn(&Counts),
) -> Result<Counts, Error>
where
    Fut: Future<Output = Result<UnitResult<R>, Error>>,
{
    let committed = sink.committed().await?;
    let done: BTreeSet<usize> = committed.keys().copied().collect();
    let mut total = Counts::default();
    for marker in committed.values() {
        let counts: Counts = serde_json::from_value(marker.counts.clone())
            .map_err(|e| Error::Internal(format!("a part marker's counts: {e}")))?;
        total.add(&counts);
    }
    on_progress(&total);
    let todo = units.enumerate().filter_map(|(i, u)| {
        let part = i / units_per_part;
        futures::future::ready((!done.contains(&part)).then_some(u.map(|u| (part, u))))
    });
    let process = &process;
    let results =
        todo.map_ok(|(part, u)| async move { process(u).await.map(|r| (part, r)) }).try_buffered(in_flight.max(1));
    futures::pin_mut!(results);
    let mut current: Option<(usize, Vec<R>, Vec<FailureRow>, Counts)> = None;
    while let Some((part, result)) = results.try_next().await? {
        if current.as_ref().is_some_and(|(p, ..)| *p != part) {
            let (p, rows, failures, counts) = current.take().expect("checked");
            sink.commit(p, &rows, &failures, &counts).await?;
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
        sink.commit(p, &rows, &failures, &counts).await?;
    }
    Ok(total)
}
