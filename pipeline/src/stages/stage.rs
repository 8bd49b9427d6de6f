//! What a stage is ([`Stage`]) and what it runs with ([`StageCtx`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use lrem_schemas::commit::FileEntry;
use lrem_schemas::config::PipelineConfig;
use lrem_schemas::store::Storage;
use lrem_schemas::{Part, RunDir, Shard};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::prompts::Prompts;
use crate::Error;
use crate::client::ModelClient;
use crate::progress::Progress;
use crate::sql::Inspector;

/// Bumped when a stage's code changes what it writes, so old outputs are not reused.
/// 2: one part-naming scheme (`part-<writer>-<seq>.parquet`) for every stage.
/// 3: parts named by attempt and committed by markers (`commits/`).
const STAGE_CODE_VERSION: u32 = 3;

/// Whether a stage runs once for the whole run, or per shard of the catalogue or of the queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Runs once, unsharded, over what every shard wrote before it (a SQL merge step: the
    /// queries table, mining).
    Once,
    /// Runs per shard of `item_id` (`--shard i/n`: `item_id mod n == i`), or once over the whole
    /// catalogue.
    PerItem,
    /// Runs per shard of `query_id` (`query_id % n == i`), or once over all queries.
    PerQuery,
}

/// One step of the DAG. Streaming stages implement [`super::streaming::Streaming`] instead and
/// get this trait from it; relational (SQL) stages implement it directly.
#[async_trait::async_trait(?Send)]
pub trait Stage: Sync {
    /// Its name: in the CLI (`--until`, `--only`), the manifest and `failures.stage`.
    fn name(&self) -> &'static str;

    /// The stages whose tables it reads; each comes earlier in [`super::DAG`].
    fn upstream(&self) -> &'static [&'static str];

    /// The tables it writes, and clears before it runs again.
    fn tables(&self) -> Vec<&'static str> {
        vec![self.name()]
    }

    /// The endpoints it calls (connected and checked before the run starts).
    fn endpoints(&self, _config: &PipelineConfig) -> Vec<String> {
        Vec::new()
    }

    /// Everything of the configuration and prompts that can change what it writes.
    fn settings(&self, config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value;

    fn scope(&self) -> Scope {
        Scope::PerQuery
    }

    /// Whether a killed run resumes it from its committed parts (else it starts over).
    fn resumable(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &StageCtx) -> Result<Counts, Error>;
}

impl std::fmt::Debug for dyn Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stage({})", self.name())
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
    pub(crate) fn add(&mut self, other: &Counts) {
        self.rows_in += other.rows_in;
        self.rows_out += other.rows_out;
        self.rows_written += other.rows_written;
        self.rows_failed += other.rows_failed;
        for (k, v) in &other.filtered {
            *self.filtered.entry(k.clone()).or_default() += v;
        }
    }
}

/// The files a stage wrote, for its commit marker.
#[derive(Debug, Default)]
pub struct Journal(std::sync::Mutex<Vec<FileEntry>>);

impl Journal {
    pub fn record(&self, entry: FileEntry) {
        self.0.lock().expect("journal lock").push(entry);
    }

    pub fn take(&self) -> Vec<FileEntry> {
        std::mem::take(&mut *self.0.lock().expect("journal lock"))
    }
}

/// What a stage runs with.
pub struct StageCtx {
    pub shard: Option<Shard>,
    pub run_dir: RunDir,
    pub storage: Arc<Storage>,
    /// This process's attempt: in the name of every file it writes.
    pub attempt: String,
    /// The running stage's fingerprint (its markers are filed under it).
    pub fingerprint: String,
    pub journal: Arc<Journal>,
    pub config: PipelineConfig,
    pub prompts: Prompts,
    pub tables: Inspector,
    pub clients: BTreeMap<String, Arc<ModelClient>>,
    pub progress: Progress,
}

impl StageCtx {
    /// Where this run (or shard) writes `table`, relative to the run's root.
    pub fn table_dir(&self, table: &str) -> String {
        self.storage.relative(&self.run_dir, &self.run_dir.table_of(table, self.shard))
    }

    pub fn failures_dir(&self, stage: &str) -> String {
        self.storage.relative(&self.run_dir, &self.run_dir.failures_of(stage, self.shard))
    }

    /// The path of part `part` of a table in `dir`, named for this attempt.
    pub fn part_path(&self, dir: &str, part: Part) -> String {
        format!("{dir}/{}", part.file_name_of(&self.attempt))
    }

    pub fn client(&self, name: &str) -> Result<Arc<ModelClient>, Error> {
        self.clients.get(name).cloned().ok_or_else(|| Error::Internal(format!("no client for endpoint {name}")))
    }

    /// SQL condition selecting this shard's rows by `column` (`TRUE` when not sharded).
    pub fn shard_filter(&self, column: &str) -> String {
        shard_filter(self.shard, column)
    }

    /// A stage's SQL (a file of `sql/stages/`) rendered with `vars` and the function
    /// `shard_filter(column)` ([`StageCtx::shard_filter`]).
    pub fn sql(&self, template: &str, vars: serde_json::Value) -> Result<String, Error> {
        let shard = self.shard;
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_function("shard_filter", move |column: String| shard_filter(shard, &column));
        env.add_function("signed_shard_filter", move |column: String| signed_shard_filter(shard, &column));
        env.render_str(template, vars).map_err(|e| Error::Internal(format!("a stage's SQL template: {e}")))
    }

    /// The single integer a `select count(*) …` returns.
    pub async fn count(&self, sql: &str) -> Result<u64, Error> {
        let batches = self.tables.frame(sql).await?.collect().await?;
        let array =
            batches.first().map(|b| b.column(0).clone()).ok_or_else(|| Error::Internal(format!("no rows: {sql}")))?;
        let n = arrow::compute::cast(&array, &arrow::datatypes::DataType::Int64)?;
        Ok(n.as_any().downcast_ref::<arrow::array::Int64Array>().expect("int64").value(0) as u64)
    }
}

fn shard_filter(shard: Option<Shard>, column: &str) -> String {
    match shard {
        None => "TRUE".into(),
        Some(s) => format!("{column} % {} = {}", s.count, s.index),
    }
}

/// [`shard_filter`] for a signed column (`item_id`): SQL's `%` keeps the sign, so a negative id
/// would belong to no shard.
fn signed_shard_filter(shard: Option<Shard>, column: &str) -> String {
    match shard {
        None => "TRUE".into(),
        Some(s) => format!("(({column} % {n}) + {n}) % {n} = {}", s.index, n = s.count),
    }
}

/// Fingerprint = hash of the stage's settings and its upstream fingerprints.
pub fn fingerprint(stage: &dyn Stage, config: &PipelineConfig, prompts: &Prompts, upstream: &[String]) -> String {
    let value = json!({
        "stage": stage.name(),
        "code": STAGE_CODE_VERSION,
        "settings": stage.settings(config, prompts),
        "upstream": upstream,
    });
    let bytes = serde_json::to_vec(&value).expect("serialises");
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

/// The start of a long text, for messages.
pub fn preview(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() { format!("{}…", &text[..end]) } else { text.to_string() }
}
