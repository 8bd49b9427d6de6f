//! `lrem-pipeline datagen`: the deterministic sample world (items, query log, qrels).
//!
//! Everything derives from one seed through independent ChaCha streams (items, queries, traffic,
//! log), and nothing iterates a hash map, so the same seed and sizes give the same bytes on every
//! machine. The committed `data_samples/` files are this generator's output with [`Args::default`];
//! a test regenerates them and compares bytes.

mod catalog;
mod log;
mod queries;
pub mod teacher;
pub mod world;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Builder, Float64Array, Int32Array, Int64Array, Int64Builder, RecordBatch, StringArray,
    StringBuilder, UInt64Array,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::Error;
use crate::parquet_out::ParquetFile;
use crate::stages::columns::string_list_array;
pub use world::{WORLD_TOML, World};

/// 2026-01-01 as days since the Unix epoch: the first day of the log.
pub const FIRST_DAY: i32 = 20454;
const BATCH_ROWS: usize = 65_536;

/// Sizes and seed of a world. The defaults are the committed sample world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub seed: u64,
    pub items: usize,
    pub queries: usize,
    pub log_rows: usize,
}

impl Default for Args {
    fn default() -> Self {
        Self { seed: 20251016, items: 6000, queries: 1500, log_rows: 60_000 }
    }
}

/// What a generation produced.
#[derive(Debug, Clone)]
pub struct Summary {
    pub items: usize,
    pub categories: usize,
    pub head_queries: usize,
    pub hard_queries: usize,
    pub log_rows: usize,
    pub days: i32,
    pub qrels: usize,
    pub files: Vec<PathBuf>,
}

/// Generates the world into `out_dir` (`items.parquet`, `query_log.parquet`, `qrels.parquet`,
/// `needs.parquet`).
/// Each file appears only once complete.
pub fn generate(args: &Args, out_dir: &Path) -> Result<Summary, Error> {
    let world = World::load(WORLD_TOML).map_err(Error::Internal)?;
    let types = world.types();
    let hard_total: usize = world.need.iter().map(|n| n.queries.len()).sum();
    let minimum = catalog::minimum_items(&types);
    if args.items < minimum {
        return Err(Error::Usage(format!(
            "--items must be at least {minimum} (one item per product type and per type attribute), got {}",
            args.items
        )));
    }
    if args.queries < hard_total {
        return Err(Error::Usage(format!(
            "--queries must be at least {hard_total} (every hard query), got {}",
            args.queries
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let stream = |n: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        rng.set_stream(n);
        rng
    };

    let items = catalog::generate(&types, args.items, &mut stream(1));
    let titles: Vec<String> = items.iter().map(|i| i.title(&types)).collect();
    let by_type = catalog::by_type(&items, types.len());
    let mut all_queries = queries::hard(&world, &items, &by_type, &titles, &mut stream(2));
    let mut taken: HashSet<String> = all_queries.iter().map(|q| lrem_schemas::normalize_query(&q.text)).collect();
    let head = queries::head(&types, &items, &by_type, args.queries - all_queries.len(), &mut taken, &mut stream(3));
    let head_queries = head.len();
    all_queries.extend(head);
    let traffic = log::traffic(&all_queries, &items, &by_type, &mut stream(4));

    let items_path = out_dir.join("items.parquet");
    write_items(&items_path, &items, &titles, &types)?;
    let qrels_path = out_dir.join("qrels.parquet");
    let qrels = write_qrels(&qrels_path, &all_queries, &items)?;
    let needs_path = out_dir.join("needs.parquet");
    write_needs(&needs_path, &world, &all_queries)?;
    let log_path = out_dir.join("query_log.parquet");
    let days = write_log(&log_path, args.log_rows, &all_queries, &traffic, &items, &mut stream(5))?;

    Ok(Summary {
        items: items.len(),
        categories: world.category.len(),
        head_queries,
        hard_queries: hard_total,
        log_rows: args.log_rows,
        days,
        qrels,
        files: vec![items_path, log_path, qrels_path, needs_path],
    })
}

fn write_items(
    path: &Path,
    items: &[catalog::Item],
    titles: &[String],
    types: &[world::TypeRef<'_>],
) -> Result<(), Error> {
    let spec = lrem_schemas::table("items").map_err(|e| Error::Internal(e.to_string()))?;
    let mut out = ParquetFile::create(path, spec.schema())?;
    for (chunk, chunk_titles) in items.chunks(BATCH_ROWS).zip(titles.chunks(BATCH_ROWS)) {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(chunk.iter().map(|i| i.id))),
            Arc::new(StringArray::from_iter_values(chunk_titles)),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|i| i.category_path(types)))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|i| i.brand(types)))),
            Arc::new(Float64Array::from_iter_values(chunk.iter().map(|i| i.price))),
        ];
        out.write(&RecordBatch::try_new(spec.schema(), columns)?)?;
    }
    out.finish()
}

fn write_qrels(path: &Path, queries: &[queries::Query], items: &[catalog::Item]) -> Result<usize, Error> {
    let spec = lrem_schemas::table("qrels").map_err(|e| Error::Internal(e.to_string()))?;
    let mut out = ParquetFile::create(path, spec.schema())?;
    let mut rows = 0;
    let rows_of = |q: &queries::Query| q.qrels.iter().map(|&(i, g)| (items[i].id, g)).collect::<Vec<_>>();
    for chunk in queries.chunks(256) {
        let mut ids = Vec::new();
        let (mut texts, mut kinds, mut patterns, mut item_ids, mut grades) = (vec![], vec![], vec![], vec![], vec![]);
        for q in chunk {
            let id = lrem_schemas::query_id(&q.text);
            for (item, grade) in rows_of(q) {
                ids.push(id);
                texts.push(q.text.as_str());
                kinds.push(q.kind.as_str());
                patterns.push(q.pattern.as_deref());
                item_ids.push(item);
                grades.push(grade);
            }
        }
        rows += ids.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(ids)),
            Arc::new(StringArray::from(texts)),
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(patterns)),
            Arc::new(Int64Array::from(item_ids)),
            Arc::new(Int32Array::from(grades)),
        ];
        out.write(&RecordBatch::try_new(spec.schema(), columns)?)?;
    }
    out.finish()?;
    Ok(rows)
}

/// The hard queries with their need and phrasing (the `needs` table).
fn write_needs(path: &Path, world: &World, queries: &[queries::Query]) -> Result<(), Error> {
    let spec = lrem_schemas::table("needs").map_err(|e| Error::Internal(e.to_string()))?;
    let hard: Vec<(&queries::Query, (usize, usize))> = queries.iter().filter_map(|q| Some((q, q.need?))).collect();
    let types: Vec<Vec<String>> = hard
        .iter()
        .map(|(_, (need, _))| world.relevant_types(&world.need[*need]))
        .collect::<Result<_, String>>()
        .map_err(Error::Internal)?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(hard.iter().map(|(q, _)| lrem_schemas::query_id(&q.text)))),
        Arc::new(StringArray::from_iter_values(hard.iter().map(|(q, _)| q.text.as_str()))),
        Arc::new(Int32Array::from_iter_values(hard.iter().map(|(_, (n, _))| *n as i32))),
        Arc::new(Int32Array::from_iter_values(hard.iter().map(|(_, (_, p))| *p as i32))),
        Arc::new(StringArray::from_iter_values(hard.iter().map(|(q, _)| q.pattern.as_deref().unwrap_or_default()))),
        string_list_array(&spec.schema(), "relevant_types", types.iter())?,
    ];
    let mut out = ParquetFile::create(path, spec.schema())?;
    out.write(&RecordBatch::try_new(spec.schema(), columns)?)?;
    out.finish()
}

/// Writes exactly `target` rows, day after day; returns the number of days the log spans.
fn write_log(
    path: &Path,
    target: usize,
    queries: &[queries::Query],
    traffic: &[log::Traffic],
    items: &[catalog::Item],
    rng: &mut ChaCha8Rng,
) -> Result<i32, Error> {
    let spec = lrem_schemas::table("query_log").map_err(|e| Error::Internal(e.to_string()))?;
    let mut out = ParquetFile::create(path, spec.schema())?;
    let mut batch = LogBatch::default();
    let mut written = 0;
    let mut day = 0;
    'days: while written < target {
        for (qi, (q, t)) in queries.iter().zip(traffic).enumerate() {
            for row in log::day_rows(qi, &q.text, t, FIRST_DAY + day, rng) {
                batch.push(&row, items);
                written += 1;
                if batch.len == BATCH_ROWS {
                    out.write(&batch.finish(&spec.schema())?)?;
                }
                if written == target {
                    break 'days;
                }
            }
        }
        day += 1;
    }
    if batch.len > 0 {
        out.write(&batch.finish(&spec.schema())?)?;
    }
    out.finish()?;
    Ok(day + 1)
}

#[derive(Default)]
struct LogBatch {
    query: StringBuilder,
    item: Int64Builder,
    day: Date32Builder,
    impressions: Int64Builder,
    clicks: Int64Builder,
    orders: Int64Builder,
    len: usize,
}

impl LogBatch {
    fn push(&mut self, row: &log::LogRow, items: &[catalog::Item]) {
        self.query.append_value(&row.typed);
        self.item.append_value(items[row.item].id);
        self.day.append_value(row.day);
        self.impressions.append_value(row.impressions);
        self.clicks.append_value(row.clicks);
        self.orders.append_value(row.orders);
        self.len += 1;
    }

    fn finish(&mut self, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch, Error> {
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.query.finish()),
            Arc::new(self.item.finish()),
            Arc::new(self.day.finish()),
            Arc::new(self.impressions.finish()),
            Arc::new(self.clicks.finish()),
            Arc::new(self.orders.finish()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}
