//! The held-out-by-need split of the sample world (`lrem_schemas::holdout`) as the trainer reads
//! it: which query of the `needs` table goes where, and the check that training never sees a
//! held-out phrasing.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{Int32Type, UInt64Type};
use lrem_schemas::holdout::{Holdout, holdout};

use crate::bail;
use crate::error::Result;
use crate::triples::Triple;

/// Each hard query of the `needs` table (by `query_id`) with where it goes for `seed`.
pub fn read(path: &Path, seed: u64) -> Result<HashMap<u64, Holdout>> {
    Ok(read_hard_queries(path, seed)?.into_iter().map(|(q, h)| (q, h.holdout)).collect())
}

/// A hard query of the `needs` table: where it goes for a seed, and its need's product types
/// (what the reference teacher answers; the oracle CoT of `eval --oracle-cot`).
#[derive(Debug, Clone)]
pub struct HardQuery {
    pub holdout: Holdout,
    pub relevant_types: Vec<String>,
}

/// Each hard query of the `needs` table (by `query_id`), read once.
pub fn read_hard_queries(path: &Path, seed: u64) -> Result<HashMap<u64, HardQuery>> {
    let (_, batches) = crate::contract::read(path, "needs")?;
    let mut rows: Vec<(u64, i32, i32, Vec<String>)> = Vec::new();
    for batch in batches {
        // Validated against the contract: the columns exist with these types.
        let column = |name: &str| batch.column_by_name(name).expect("checked by the contract");
        let ids = column("query_id").as_primitive::<UInt64Type>();
        let (needs, phrasings) =
            (column("need_id").as_primitive::<Int32Type>(), column("phrasing").as_primitive::<Int32Type>());
        let lists = column("relevant_types").as_list::<i32>();
        for i in 0..batch.num_rows() {
            // Utf8 as written here; a large or view string column from another writer reads too.
            let list = arrow::compute::cast(&lists.value(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| crate::err!("{}: column `relevant_types`, row {}: {e}", path.display(), rows.len()))?;
            let types = list.as_string::<i32>().iter().map(|t| t.unwrap_or_default().to_string()).collect();
            rows.push((ids.value(i), needs.value(i), phrasings.value(i), types));
        }
    }
    let mut phrasings: HashMap<i32, i32> = HashMap::new();
    for (_, need, _, _) in &rows {
        *phrasings.entry(*need).or_default() += 1;
    }
    Ok(rows
        .into_iter()
        .map(|(q, need, p, relevant_types)| {
            (q, HardQuery { holdout: holdout(need, p, phrasings[&need], seed), relevant_types })
        })
        .collect())
}

/// Fails, naming them, when any triple's query is held out from training.
pub fn check_trainable(triples: &[Triple], split: &HashMap<u64, Holdout>, source: &str) -> Result<()> {
    let held: Vec<(&Triple, Holdout)> =
        triples.iter().filter_map(|t| split.get(&t.query_id).filter(|h| !h.trainable()).map(|&h| (t, h))).collect();
    if held.is_empty() {
        return Ok(());
    }
    let mut queries: Vec<(&str, &str)> = held.iter().map(|(t, h)| (t.query.as_str(), h.as_str())).collect();
    queries.sort();
    queries.dedup();
    let examples: Vec<String> = queries.iter().take(3).map(|(q, h)| format!("{q:?} ({h})")).collect();
    bail!(
        "{source}: {} triples of {} queries are held out from training by need, e.g. {}; \
         cut them from the query log before the pipeline runs, or train without `data.needs`",
        held.len(),
        queries.len(),
        examples.join(", ")
    )
}
