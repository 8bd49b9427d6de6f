//! Read-only SQL over a run directory (`lrem-pipeline sql --run DIR`).
//!
//! Every table of the DAG is registered, so a query or an inspection file works on any directory:
//! - inputs (`items`, `query_log`, `qrels`) from `DIR/<name>.{parquet,csv,jsonl}` or `DIR/<name>/`,
//!   seen through their schema: columns found by name (a CSV header in any order), optional
//!   columns a file lacks read as NULL, extra columns ignored;
//! - stage tables from the files their commit markers name (every shard's), never from a listing;
//!   a directory without a manifest (Parquet parts put there by hand) from `DIR/tables/<name>/`;
//! - `DIR` may be an object-store URL (`s3://bucket/run`), registered in DataFusion's registry;
//! - a table not produced yet is registered empty with its schema, so `funnel.sql` shows 0 rather
//!   than failing on a missing name.

mod functions;
mod list_field;
mod readonly;
mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext, cast, ident, lit,
};
use lrem_schemas::commit::{self, FileEntry};
use lrem_schemas::store::Storage;
use lrem_schemas::{RunDir, TableKind, TableSpec, all_tables};

use crate::Error;
use crate::manifest::Manifest;
pub use readonly::read_only_statements;
pub use render::{OutputFormat, render};

/// Where a registered table's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Files(PathBuf),
    /// The files commit markers name, as URLs.
    Committed(Vec<String>),
    /// Not produced (yet) in this directory: registered with its schema and no rows.
    Empty,
}

/// A DataFusion session with every table of one directory registered.
pub struct Inspector {
    ctx: SessionContext,
    storage: Arc<Storage>,
    run: RunDir,
    inputs: BTreeMap<String, PathBuf>,
    /// The files of each table that commit markers name; `None` for a directory without a
    /// manifest.
    committed: Option<BTreeMap<String, Vec<FileEntry>>>,
    pub tables: Vec<(&'static str, Source)>,
}

impl Inspector {
    /// Registers the tables of `dir` (a path or an object-store URL); inputs a run's manifest
    /// names are taken from there.
    pub async fn open(dir: &Path) -> Result<Self, Error> {
        let storage = Arc::new(Storage::open(&dir.to_string_lossy())?);
        match storage.local_root() {
            Some(root) if !root.is_dir() => {
                return Err(Error::Usage(format!("--run {}: no such directory", dir.display())));
            }
            Some(_) => {}
            None => storage.check_readable().await?,
        }
        let mut inputs =
            Manifest::load(&storage, &storage.run_dir(), None).await?.map(|m| m.inputs).unwrap_or_default();
        for path in inputs.values_mut() {
            let location = path.to_string_lossy().into_owned();
            if lrem_schemas::store::is_url(&location) {
                *path = crate::local_copy::fetch(&location).await?;
            }
        }
        let inspector = Self::open_run(storage, inputs).await?;
        inspector.register_cache()?;
        Ok(inspector)
    }

    /// The response cache as table `cache` (empty when the run has none, or a running pipeline
    /// holds it).
    fn register_cache(&self) -> Result<(), Error> {
        use arrow::array::{StringArray, TimestampMillisecondArray};
        let schema = lrem_schemas::tables::cache_table().schema();
        let path = self.run.cache(None);
        let entries = if self.storage.local_root().is_some() && path.exists() {
            match crate::client::cache::Cache::open(&path).and_then(|c| c.entries()) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!("{}: not readable now ({e}); the `cache` table is empty", path.display());
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let text = |f: &dyn Fn(&crate::client::cache::Entry) -> String| {
            Arc::new(StringArray::from_iter_values(entries.iter().map(|(_, e)| f(e)))) as arrow::array::ArrayRef
        };
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.iter().map(|b| format!("{b:02x}")).collect()).collect();
        let columns = vec![
            Arc::new(StringArray::from(keys)) as arrow::array::ArrayRef,
            text(&|e| e.kind.clone()),
            text(&|e| e.model.clone()),
            text(&|e| e.request.to_string()),
            text(&|e| e.response.to_string()),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(entries.iter().map(|(_, e)| e.created_ms))
                    .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        self.register_batches("cache", schema, vec![batch])
    }

    /// Like [`Inspector::open`], with the input files given (by table name).
    pub async fn open_with_inputs(dir: &Path, inputs: BTreeMap<String, PathBuf>) -> Result<Self, Error> {
        Self::open_run(Arc::new(Storage::open(&dir.to_string_lossy())?), inputs).await
    }

    /// The tables of the run `storage` holds, with the input files given (by table name).
    pub async fn open_run(storage: Arc<Storage>, inputs: BTreeMap<String, PathBuf>) -> Result<Self, Error> {
        let mut config = SessionConfig::new().with_information_schema(true);
        // Parts of sharded runs put there by hand live in `shard=i/` below the table's directory.
        config.options_mut().execution.listing_table_ignore_subdirectory = false;
        let ctx = SessionContext::new_with_config(config);
        if storage.local_root().is_none() {
            ctx.register_object_store(storage.base_url(), storage.object_store());
        }
        functions::register(&ctx);
        let run = storage.run_dir();
        let committed = commit::committed_files(&storage, &run).await?;
        let mut inspector = Self { ctx, storage, run, inputs, committed, tables: Vec::new() };
        for spec in all_tables() {
            let source = inspector.register(&spec).await?;
            inspector.tables.push((spec.name, source));
        }
        Ok(inspector)
    }

    /// Registers the stage tables again, from the commit markers as they are now (after a stage
    /// committed).
    pub async fn refresh(&mut self) -> Result<(), Error> {
        self.committed = commit::committed_files(&self.storage, &self.run).await?;
        for spec in all_tables().into_iter().filter(|t| t.kind == TableKind::Stage) {
            self.ctx.deregister_table(spec.name)?;
            let source = self.register(&spec).await?;
            if let Some(entry) = self.tables.iter_mut().find(|(n, _)| *n == spec.name) {
                entry.1 = source;
            }
        }
        Ok(())
    }

    async fn register(&self, spec: &TableSpec) -> Result<Source, Error> {
        let source = match (self.inputs.get(spec.name), &self.committed) {
            (Some(path), _) => Source::Files(path.clone()),
            (None, Some(committed)) if spec.kind == TableKind::Stage => match committed.get(spec.name) {
                Some(files) if !files.is_empty() => {
                    Source::Committed(files.iter().map(|f| self.storage.url(&f.path)).collect())
                }
                _ => Source::Empty,
            },
            (None, _) => match self.storage.local_root() {
                Some(root) => locate(root, spec),
                None => Source::Empty,
            },
        };
        register(&self.ctx, spec, &source).await?;
        Ok(source)
    }

    /// A trusted statement (the pipeline's own SQL) as a DataFrame, without the read-only check.
    pub async fn frame(&self, sql: &str) -> Result<DataFrame, Error> {
        Ok(self.ctx.sql(sql).await?)
    }

    /// Registers an extra in-memory table (e.g. the response cache).
    pub fn register_batches(
        &self,
        name: &str,
        schema: arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<(), Error> {
        let table = MemTable::try_new(schema, vec![batches])?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Runs each statement of `text` (read-only) and returns its result batches.
    pub async fn query(&self, text: &str) -> Result<Vec<Vec<RecordBatch>>, Error> {
        let guard = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let mut results = Vec::new();
        for statement in read_only_statements(text)? {
            let frame = self.ctx.sql_with_options(&statement, guard).await?;
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let mut batches = frame.collect().await?;
            if batches.is_empty() {
                // Keep the column names of an empty answer (a CSV header, an empty table).
                batches.push(RecordBatch::new_empty(schema));
            }
            results.push(batches);
        }
        Ok(results)
    }
}

fn locate(dir: &Path, spec: &TableSpec) -> Source {
    let run = RunDir::new(dir);
    let candidates: Vec<PathBuf> = match spec.kind {
        TableKind::Input => run.input_candidates(spec.name),
        TableKind::Stage => vec![run.table(spec.name)],
        TableKind::Run => vec![],
    };
    candidates
        .into_iter()
        .find(|p| lrem_schemas::validate::input_files(p, spec.name).is_ok())
        .map_or(Source::Empty, Source::Files)
}

async fn register(ctx: &SessionContext, spec: &TableSpec, source: &Source) -> Result<(), Error> {
    let schema = spec.schema();
    let path = match source {
        Source::Empty => {
            let table = MemTable::try_new(schema.clone(), vec![vec![]])?;
            ctx.register_table(spec.name, Arc::new(table))?;
            return Ok(());
        }
        Source::Files(p) => p,
        Source::Committed(urls) => {
            let paths = urls.iter().map(ListingTableUrl::parse).collect::<Result<Vec<_>, _>>()?;
            let options =
                ParquetReadOptions::default().to_listing_options(&ctx.copied_config(), ctx.copied_table_options());
            let config = ListingTableConfig::new_with_multi_paths(paths)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await?;
            ctx.register_table(spec.name, Arc::new(ListingTable::try_new(config)?))?;
            return Ok(());
        }
    };
    let location = if path.is_dir() { format!("{}/", path.display()) } else { path.display().to_string() };
    if spec.kind == TableKind::Input {
        return register_input(ctx, spec, path, &location).await;
    }
    ctx.register_parquet(spec.name, &location, ParquetReadOptions::default()).await?;
    Ok(())
}

/// An input file as the user wrote it, registered under a hidden name, and the table itself as a
/// view of it with exactly the spec's columns, in the spec's order and types.
async fn register_input(ctx: &SessionContext, spec: &TableSpec, path: &Path, location: &str) -> Result<(), Error> {
    let raw = format!("__input_{}", spec.name);
    ctx.deregister_table(&raw)?;
    match path.extension().and_then(|e| e.to_str()).unwrap_or("parquet") {
        "csv" => {
            // DataFusion reads CSV columns by position: give it the header's own names, each
            // typed as the spec types it (other columns as text).
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let (header, _) = arrow::csv::reader::Format::default().with_header(true).infer_schema(file, Some(0))?;
            let fields: Vec<Field> = header
                .fields()
                .iter()
                .map(|f| {
                    Field::new(f.name(), spec.column(f.name()).map_or(DataType::Utf8, |c| c.data_type.clone()), true)
                })
                .collect();
            let schema = Schema::new(fields);
            ctx.register_csv(&raw, location, CsvReadOptions::new().schema(&schema).file_extension(".csv")).await?
        }
        "jsonl" => {
            ctx.register_json(
                &raw,
                location,
                JsonReadOptions::default().schema(&spec.schema()).file_extension(".jsonl"),
            )
            .await?
        }
        _ => ctx.register_parquet(&raw, location, ParquetReadOptions::default()).await?,
    }
    let frame = ctx.table(raw.as_str()).await?;
    // Text stays in the file's own string type: Parquet strings arrive as Utf8View, which the
    // stages' functions read without a copy.
    let text = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let mut columns = Vec::with_capacity(spec.columns.len());
    for c in &spec.columns {
        let value = match frame.schema().field_with_unqualified_name(c.name) {
            Ok(f) if f.data_type() == &c.data_type || (text(f.data_type()) && text(&c.data_type)) => ident(c.name),
            Ok(_) => cast(ident(c.name), c.data_type.clone()),
            Err(_) => lit(ScalarValue::try_from(&c.data_type)?),
        };
        columns.push(value.alias(c.name));
    }
    ctx.register_table(spec.name, frame.select(columns)?.into_view())?;
    Ok(())
}
