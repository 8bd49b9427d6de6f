//! P3 (relational stages at scale): `queries`, `hard_queries`, `gain` and the `triples` split, as
//! the pipeline runs them (the same SQL files, the same Parquet writer), on a `datagen` world of
//! millions of log rows with synthetic retrieval sets ① and ② of tens of millions of rows.
//!
//! `prepare DIR` writes the world and the tables the four stages read; `run DIR` times the four
//! stages in a fresh process and prints one JSON line (seconds and rows per stage, peak RSS).
//! `scripts/bench_relational.sh` runs it next to DuckDB and Polars on the same files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Float32Array, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int64Type, UInt64Type};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use lrem_pipeline::Error;
use lrem_pipeline::parquet_out::ParquetFile;
use lrem_pipeline::progress::Progress;
use lrem_pipeline::sql::Inspector;
use lrem_pipeline::stages::{self, Prompts, StageCtx};
use lrem_schemas::RunDir;
use lrem_schemas::config::PipelineConfig;
use lrem_schemas::store::Storage;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the world (`DIR/inputs`), sets ① and ②, `cot` and `relevance` (`DIR/run/tables`) and
    /// the values the stage SQL is rendered with (`DIR/params.json`).
    Prepare {
        dir: PathBuf,
        #[arg(long)]
        log_rows: usize,
        #[arg(long)]
        queries: usize,
        #[arg(long)]
        items: usize,
        /// Rows per query in each retrieval set.
        #[arg(long, default_value_t = 100)]
        k: usize,
    },
    /// Runs the four stages into `DIR/run/tables` and prints their timings as JSON.
    Run { dir: PathBuf },
}

/// The sample config's thresholds, with every hard query kept (the SQL peers cannot know which
/// of the config's `max_queries` the pipeline would keep on ties, so the bench keeps them all).
fn config(dir: &Path) -> Result<PipelineConfig, Error> {
    let mut config = PipelineConfig::load(Path::new("data_samples/pipeline.toml"))?;
    config.inputs.items = dir.join("inputs/items.parquet");
    config.inputs.query_log = dir.join("inputs/query_log.parquet");
    config.run_dir = dir.join("run").display().to_string();
    config.stages.mining.max_queries = 0;
    Ok(config)
}

async fn stage_ctx(dir: &Path, run_dir: &Path) -> Result<StageCtx, Error> {
    let config = config(dir)?;
    let inputs = [("items", &config.inputs.items), ("query_log", &config.inputs.query_log)]
        .into_iter()
        .map(|(name, path)| (name.to_string(), path.clone()))
        .collect();
    let storage = Arc::new(Storage::open(&run_dir.display().to_string())?);
    Ok(StageCtx {
        shard: None,
        run_dir: RunDir::new(run_dir),
        storage,
        attempt: "bench".into(),
        fingerprint: "bench".into(),
        journal: Default::default(),
        prompts: Prompts::load(&config, Path::new("."))?,
        config,
        tables: Inspector::open_with_inputs(run_dir, inputs).await?,
        clients: Default::default(),
        progress: Progress::new(true),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    match Cli::parse().command {
        Command::Prepare { dir, log_rows, queries, items, k } => prepare(&dir, log_rows, queries, items, k).await,
        Command::Run { dir } => run(&dir).await,
    }
}

async fn run(dir: &Path) -> Result<(), Error> {
    let run_dir = dir.join("run");
    for table in ["queries", "hard_queries", "gain", "triples", "triples_cold_start", "triples_rl"] {
        let path = run_dir.join("tables").join(table);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    let start = Instant::now();
    let mut ctx = stage_ctx(dir, &run_dir).await?;
    let mut stages = serde_json::Map::new();
    let plan = [("queries", "queries"), ("hard_queries", "hard_queries"), ("gain", "gain"), ("split", "triples")];
    for (name, stage) in plan {
        let stage = stages::find(stage)?;
        let t = Instant::now();
        let counts = stage.run(&ctx).await?;
        ctx.tables.refresh().await?;
        stages.insert(name.into(), json!({ "seconds": t.elapsed().as_secs_f64(), "rows": counts.rows_written }));
    }
    let rl = ctx.count("select count(*) from triples_rl").await?;
    stages["split"]["rl_rows"] = json!(rl);
    let report = json!({
        "engine": "pipeline (DataFusion)",
        "seconds": start.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
        "stages": stages,
    });
    println!("{report}");
    Ok(())
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.map_or(f64::NAN, |k| k / 1024.0)
}

async fn prepare(dir: &Path, log_rows: usize, queries: usize, items: usize, k: usize) -> Result<(), Error> {
    let args = lrem_pipeline::datagen::Args { log_rows, queries, items, ..Default::default() };
    let summary = lrem_pipeline::datagen::generate(&args, &dir.join("inputs"))?;
    eprintln!("world: {} log rows, {} queries, {} items", summary.log_rows, queries, summary.items);

    // The queries stage once, untimed, for the query ids and engaged items the sets are built on.
    let scratch = dir.join("prepare");
    let mut ctx = stage_ctx(dir, &scratch).await?;
    stages::find("queries")?.run(&ctx).await?;
    ctx.tables.refresh().await?;
    let item_ids = column_i64(&ctx, "select item_id from items order by item_id").await?;
    let mut sets = SyntheticSets::create(&dir.join("run/tables"), k)?;
    let mut stream =
        ctx.tables.frame("select query_id, query, engaged_items from queries").await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        sets.add(&batch?, &item_ids)?;
    }
    let written = sets.finish()?;
    std::fs::remove_dir_all(&scratch).map_err(|e| Error::io(&scratch, e))?;

    let config = config(dir)?;
    let m = &config.stages.mining;
    let params = json!({
        "min_days": m.min_days, "min_impressions": m.min_impressions, "max_ctr": m.max_ctr,
        "min_missed_items": m.min_missed_items, "min_missed_share": m.min_missed_share,
        "max_queries": m.max_queries, "pattern_case": "CAST(NULL AS VARCHAR)", "shard_filter": "TRUE", "shard_filter_1": "TRUE",
        "seed": config.stages.split.seed, "rl_fraction": config.stages.split.rl_fraction,
        "log_rows": log_rows, "tables": written,
    });
    let path = dir.join("params.json");
    std::fs::write(&path, serde_json::to_string_pretty(&params).expect("json")).map_err(|e| Error::io(&path, e))?;
    eprintln!("tables: {written}");
    Ok(())
}

async fn column_i64(ctx: &StageCtx, sql: &str) -> Result<Vec<i64>, Error> {
    let mut out = Vec::new();
    for batch in ctx.tables.frame(sql).await?.collect().await? {
        out.extend(batch.column(0).as_primitive::<Int64Type>().values().iter().copied());
    }
    Ok(out)
}

/// Sets ① and ② for every query, `cot` for every query and `relevance` for ② − ①.
///
/// ① holds each engaged item with probability ½ (so mining finds misses), the rest random items;
/// ② keeps ①'s first half and adds as many items ① lacks, engaged ones first; a third of the
/// gain pairs are relevant.
struct SyntheticSets {
    k: usize,
    rng: ChaCha8Rng,
    retrieval_1: ParquetFile,
    retrieval_2: ParquetFile,
    cot: ParquetFile,
    relevance: ParquetFile,
    rows: [u64; 4],
}

impl SyntheticSets {
    fn create(tables: &Path, k: usize) -> Result<Self, Error> {
        let file = |table: &str| -> Result<ParquetFile, Error> {
            let dir = tables.join(table);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            ParquetFile::create(
                &dir.join(lrem_schemas::Part { writer: 0, seq: 0 }.file_name()),
                lrem_schemas::table(table)?.schema(),
            )
        };
        Ok(Self {
            k,
            rng: ChaCha8Rng::seed_from_u64(3),
            retrieval_1: file("retrieval_1")?,
            retrieval_2: file("retrieval_2")?,
            cot: file("cot")?,
            relevance: file("relevance")?,
            rows: [0; 4],
        })
    }

    fn add(&mut self, batch: &RecordBatch, item_ids: &[i64]) -> Result<(), Error> {
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let texts = arrow::compute::cast(batch.column(1), &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let engaged = batch.column(2).as_list::<i32>();
        let (mut r1, mut r2, mut gain) = (Retrieved::default(), Retrieved::default(), Retrieved::default());
        let mut cot_keywords =
            ListBuilder::new(StringBuilder::new()).with_field(Field::new("item", DataType::Utf8, false));
        for row in 0..batch.num_rows() {
            let query_id = ids.value(row);
            let engaged = engaged.value(row);
            let engaged = engaged.as_primitive::<Int64Type>().values();
            let mut first: Vec<i64> = engaged.iter().copied().filter(|_| self.rng.random_bool(0.5)).collect();
            first.truncate(self.k);
            let mut seen: HashSet<i64> = first.iter().copied().collect();
            let draws = sample(&mut self.rng, item_ids.len(), (2 * self.k).min(item_ids.len()));
            let mut draws = draws.iter().map(|i| item_ids[i]).filter(|item| !engaged.contains(item));
            while first.len() < self.k {
                match draws.next() {
                    Some(item) if seen.insert(item) => first.push(item),
                    Some(_) => {}
                    None => break,
                }
            }
            let mut second: Vec<i64> = first[..first.len() / 2].to_vec();
            second.extend(engaged.iter().copied().filter(|item| seen.insert(*item)));
            second.extend(draws.filter(|item| seen.insert(*item)));
            second.truncate(self.k);
            let in_first: HashSet<i64> = first.iter().copied().collect();
            r1.push_all(query_id, &first);
            r2.push_all(query_id, &second);
            for (rank, &item) in second.iter().enumerate() {
                if !in_first.contains(&item) {
                    gain.push(query_id, item, rank, self.rng.random::<f32>());
                }
            }
            cot_keywords.append_value([Some("first keyword"), Some("second keyword")]);
        }
        let n = batch.num_rows();
        self.rows[0] += r1.write(&mut self.retrieval_1, "retrieval_1")?;
        self.rows[1] += r2.write(&mut self.retrieval_2, "retrieval_2")?;
        let cot: Vec<ArrayRef> = vec![
            Arc::new(ids.clone()),
            Arc::new(texts.clone()),
            Arc::new(cot_keywords.finish()),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n("first keyword, second keyword", n))),
            Arc::new(Int32Array::from(vec![0; n])),
        ];
        self.cot.write(&batch_of("cot", cot)?)?;
        self.rows[2] += n as u64;
        let relevant: BooleanArray = gain.score.iter().map(|s| Some(*s >= 2.0 / 3.0)).collect();
        let relevance: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(std::mem::take(&mut gain.query_id))),
            Arc::new(Int64Array::from(std::mem::take(&mut gain.item_id))),
            Arc::new(Float32Array::from(std::mem::take(&mut gain.score))),
            Arc::new(relevant),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n("similarity", gain.rank.len()))),
        ];
        self.rows[3] += gain.rank.len() as u64;
        self.relevance.write(&batch_of("relevance", relevance)?)?;
        Ok(())
    }

    fn finish(self) -> Result<serde_json::Value, Error> {
        for file in [self.retrieval_1, self.retrieval_2, self.cot, self.relevance] {
            file.finish()?;
        }
        let [r1, r2, cot, relevance] = self.rows;
        Ok(json!({ "retrieval_1": r1, "retrieval_2": r2, "cot": cot, "relevance": relevance }))
    }
}

#[derive(Default)]
struct Retrieved {
    query_id: Vec<u64>,
    item_id: Vec<i64>,
    rank: Vec<i32>,
    score: Vec<f32>,
}

impl Retrieved {
    fn push(&mut self, query_id: u64, item_id: i64, rank: usize, score: f32) {
        self.query_id.push(query_id);
        self.item_id.push(item_id);
        self.rank.push(rank as i32 + 1);
        self.score.push(score);
    }

    fn push_all(&mut self, query_id: u64, items: &[i64]) {
        for (rank, &item) in items.iter().enumerate() {
            self.push(query_id, item, rank, 1.0 - rank as f32 / (2 * items.len()) as f32);
        }
    }

    fn write(self, out: &mut ParquetFile, table: &str) -> Result<u64, Error> {
        let rows = self.rank.len() as u64;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(self.query_id)),
            Arc::new(Int64Array::from(self.item_id)),
            Arc::new(Int32Array::from(self.rank)),
            Arc::new(Float32Array::from(self.score)),
        ];
        out.write(&batch_of(table, columns)?)?;
        Ok(rows)
    }
}

fn batch_of(table: &str, columns: Vec<ArrayRef>) -> Result<RecordBatch, Error> {
    Ok(RecordBatch::try_new(lrem_schemas::table(table)?.schema(), columns)?)
}
