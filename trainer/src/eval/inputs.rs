//! The evaluation's inputs: the catalogue (`items.parquet`), graded judgements
//! (`qrels.parquet`), read with the parquet crate (string views are cast to plain strings).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type, Int64Type, UInt64Type};

use crate::err;
use crate::error::Result;

/// Column `name` of the contract's table, in the contract's type.
fn column(path: &Path, spec: &lrem_schemas::TableSpec, batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    let want = &spec.column(name).ok_or_else(|| err!("the `{}` contract has no column `{name}`", spec.name))?.data_type;
    let want = if matches!(want, DataType::Utf8View | DataType::LargeUtf8) { &DataType::Utf8 } else { want };
    let col = batch.column_by_name(name).ok_or_else(|| err!("{}: no column `{name}`", path.display()))?;
    let col = arrow::compute::cast(col, want).map_err(|e| err!("{}: column `{name}`: {e}", path.display()))?;
    if col.null_count() > 0 {
        return Err(err!("{}: column `{name}` has nulls", path.display()));
    }
    Ok(col)
}

/// Item id → title.
pub fn read_items(path: &Path) -> Result<BTreeMap<i64, String>> {
    let mut items = BTreeMap::new();
    let (spec, batches) = crate::contract::read(path, "items")?;
    for b in batches {
        let ids = column(path, &spec, &b, "item_id")?;
        let titles = column(path, &spec, &b, "title")?;
        for (id, title) in ids.as_primitive::<Int64Type>().values().iter().zip(titles.as_string::<i32>().iter()) {
            items.insert(*id, title.unwrap_or_default().to_string());
        }
    }
    Ok(items)
}

/// A judged query: its text, `head` or `hard`, and relevant item id → grade.
#[derive(Debug, Clone)]
pub struct JudgedQuery {
    pub query_id: u64,
    pub query: String,
    pub kind: String,
    pub relevant: HashMap<i64, i32>,
    /// For a hard query of the sample world, where held out by need puts it (with `--needs`).
    pub holdout: Option<lrem_schemas::holdout::Holdout>,
    /// For a hard query of the sample world, the product types its need calls for (with `--needs`).
    pub relevant_types: Vec<String>,
}

pub fn read_qrels(path: &Path) -> Result<Vec<JudgedQuery>> {
    let mut queries: BTreeMap<u64, JudgedQuery> = BTreeMap::new();
    let (spec, batches) = crate::contract::read(path, "qrels")?;
    for b in batches {
        let qid = column(path, &spec, &b, "query_id")?;
        let text = column(path, &spec, &b, "query")?;
        let kind = column(path, &spec, &b, "query_kind")?;
        let item = column(path, &spec, &b, "item_id")?;
        let grade = column(path, &spec, &b, "grade")?;
        let (qid, text, kind) = (qid.as_primitive::<UInt64Type>(), text.as_string::<i32>(), kind.as_string::<i32>());
        let (item, grade) = (item.as_primitive::<Int64Type>(), grade.as_primitive::<Int32Type>());
        for r in 0..b.num_rows() {
            let q = queries.entry(qid.value(r)).or_insert_with(|| JudgedQuery {
                query_id: qid.value(r),
                query: text.value(r).to_string(),
                kind: kind.value(r).to_string(),
                relevant: HashMap::new(),
                holdout: None,
                relevant_types: Vec::new(),
            });
            if grade.value(r) > 0 {
                q.relevant.insert(item.value(r), grade.value(r));
            }
        }
    }
    Ok(queries.into_values().filter(|q| !q.relevant.is_empty()).collect())
}
