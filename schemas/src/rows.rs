//! Row types of the tables both halves exchange, with their Arrow conversions by column name, so
//! that no crate spells a contract table's columns by hand.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Float32Type, Int64Type, UInt64Type};

/// One `<query, CoT, item>` triple: a row of `triples`, `triples_cold_start` or `triples_rl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Triple {
    pub query_id: u64,
    pub query: String,
    pub cot: String,
    pub item_id: i64,
    pub title: String,
    pub relevance: f32,
}

impl Triple {
    /// The rows of a batch in the schema of a triples table (checked by the caller, e.g. with
    /// [`crate::TableSpec::schema`]); `None` names the first column the batch lacks or types
    /// otherwise.
    pub fn from_batch(batch: &RecordBatch) -> Result<Vec<Triple>, String> {
        let col = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column \"{name}\""));
        let (query_id, item_id) = (col("query_id")?, col("item_id")?);
        let (query, cot, title, relevance) = (col("query")?, col("cot")?, col("title")?, col("relevance")?);
        let typed = |name: &str| format!("column \"{name}\" has another type than the contract's");
        let query_id = query_id.as_primitive_opt::<UInt64Type>().ok_or_else(|| typed("query_id"))?;
        let item_id = item_id.as_primitive_opt::<Int64Type>().ok_or_else(|| typed("item_id"))?;
        let relevance = relevance.as_primitive_opt::<Float32Type>().ok_or_else(|| typed("relevance"))?;
        let (query, cot, title) = (
            query.as_string_opt::<i32>().ok_or_else(|| typed("query"))?,
            cot.as_string_opt::<i32>().ok_or_else(|| typed("cot"))?,
            title.as_string_opt::<i32>().ok_or_else(|| typed("title"))?,
        );
        Ok((0..batch.num_rows())
            .map(|i| Triple {
                query_id: query_id.value(i),
                query: query.value(i).to_string(),
                cot: cot.value(i).to_string(),
                item_id: item_id.value(i),
                title: title.value(i).to_string(),
                relevance: if relevance.is_null(i) { 0.0 } else { relevance.value(i) },
            })
            .collect())
    }

    /// A batch of `table` (one of the triples tables) holding `rows`.
    pub fn to_batch(table: &str, rows: &[Triple]) -> Result<RecordBatch, crate::Error> {
        let schema = crate::table(table)?.schema();
        let named: Vec<(&str, ArrayRef)> = vec![
            ("query_id", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|t| t.query_id)))),
            ("query", Arc::new(StringArray::from_iter_values(rows.iter().map(|t| &t.query)))),
            ("cot", Arc::new(StringArray::from_iter_values(rows.iter().map(|t| &t.cot)))),
            ("item_id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|t| t.item_id)))),
            ("title", Arc::new(StringArray::from_iter_values(rows.iter().map(|t| &t.title)))),
            ("relevance", Arc::new(Float32Array::from_iter_values(rows.iter().map(|t| t.relevance)))),
        ];
        let columns = schema
            .fields()
            .iter()
            .map(|f| named.iter().find(|(n, _)| *n == f.name()).map(|(_, c)| c.clone()).expect("every column is built"))
            .collect();
        Ok(RecordBatch::try_new(schema, columns).expect("the columns match the contract"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triple_round_trips_through_every_triples_table() {
        let t = Triple {
            query_id: 7,
            query: "energizing drink".into(),
            cot: "coffee".into(),
            item_id: 3,
            title: "dark roast".into(),
            relevance: 0.5,
        };
        for table in ["triples", "triples_cold_start", "triples_rl"] {
            let batch = Triple::to_batch(table, std::slice::from_ref(&t)).unwrap();
            assert_eq!(Triple::from_batch(&batch).unwrap(), vec![t.clone()]);
        }
    }
}
