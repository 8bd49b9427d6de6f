//! Read-only SQL over a run directory (`lrem-pipeline sql --run DIR`).
//!
//! Every table of the DAG is registered, so a query or an inspection file works on any directory:
//! - inputs (`items`, `query_log`, `qrels`) from `DIR/<name>.{parquet,csv,jsonl}` or `DIR/<name>/`;
//! - stage tables from `DIR/tables/<name>/` (Parquet parts, shards `shard=i/` included);
//! - a table not produced yet is registered empty with its schema, so `funnel.sql` shows 0 rather
//!   than failing on a missing name.

mod functions;
mod readonly;
mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext};
use lrem_schemas::{TableKind, TableSpec, all_tables};

use crate::Error;
pub use readonly::read_only_statements;
pub use render::{OutputFormat, render};

/// Where a registered table's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Files(PathBuf),
    /// Not produced (yet) in this directory: registered with its schema and no rows.
    Empty,
}

/// A DataFusion session with every table of one directory registered.
pub struct Inspector {
    ctx: SessionContext,
    pub tables: Vec<(&'static str, Source)>,
}

impl Inspector {
    pub async fn open(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::Usage(format!("--run {}: no such directory", dir.display())));
        }
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        functions::register(&ctx);
        let mut tables = Vec::new();
        for spec in all_tables() {
            let source = locate(dir, &spec);
            register(&ctx, &spec, &source).await?;
            tables.push((spec.name, source));
        }
        Ok(Self { ctx, tables })
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
    let candidates: Vec<PathBuf> = match spec.kind {
        TableKind::Input => ["parquet", "csv", "jsonl"]
            .iter()
            .map(|ext| dir.join(format!("{}.{ext}", spec.name)))
            .chain([dir.join(spec.name), dir.join("inputs").join(spec.name)])
            .collect(),
        TableKind::Stage => vec![dir.join("tables").join(spec.name)],
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
    };
    let location = if path.is_dir() { format!("{}/", path.display()) } else { path.display().to_string() };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("parquet");
    match extension {
        "csv" => {
            ctx.register_csv(spec.name, &location, CsvReadOptions::new().schema(&schema).file_extension(".csv")).await?
        }
        "jsonl" => {
            ctx.register_json(spec.name, &location, JsonReadOptions::default().schema(&schema).file_extension(".jsonl"))
                .await?
        }
        _ => ctx.register_parquet(spec.name, &location, ParquetReadOptions::default()).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_directory_has_every_table_with_no_rows() {
        let dir = tempfile::tempdir().unwrap();
        let inspector = Inspector::open(dir.path()).await.unwrap();
        assert!(inspector.tables.iter().all(|(_, s)| *s == Source::Empty));
        let out = inspector.query("select count(*) as n from triples_rl").await.unwrap();
        assert_eq!(render(&out[0], OutputFormat::Csv).unwrap(), "n\n0\n");
    }

    #[tokio::test]
    async fn query_id_function_matches_rust() {
        let dir = tempfile::tempdir().unwrap();
        let inspector = Inspector::open(dir.path()).await.unwrap();
        let out =
            inspector.query("select lrem_query_id('  Green TEA ') as id, lrem_normalize('Ｔｅａ') as n").await.unwrap();
        let expected = format!("id,n\n{},tea\n", lrem_schemas::query_id("green tea"));
        assert_eq!(render(&out[0], OutputFormat::Csv).unwrap(), expected);
    }

    #[tokio::test]
    async fn missing_directory_is_named() {
        let err = Inspector::open(Path::new("/no/such/run")).await.err().unwrap().to_string();
        assert_eq!(err, "--run /no/such/run: no such directory");
    }
}
