//! Typed access to result columns, whatever string/integer width DataFusion chose.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Int64Type, UInt64Type};

use crate::Error;

fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<std::sync::Arc<dyn Array>, Error> {
    let c = batch.column_by_name(name).ok_or_else(|| Error::Internal(format!("no column {name}")))?;
    Ok(cast(c, to)?)
}

pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>, Error> {
    let a = column(batch, name, &DataType::Utf8)?;
    Ok(a.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()).collect())
}

pub fn u64s(batch: &RecordBatch, name: &str) -> Result<Vec<u64>, Error> {
    let a = column(batch, name, &DataType::UInt64)?;
    Ok(a.as_primitive::<UInt64Type>().values().to_vec())
}

pub fn i64s(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, Error> {
    let a = column(batch, name, &DataType::Int64)?;
    Ok(a.as_primitive::<Int64Type>().values().to_vec())
}

pub fn f32s(batch: &RecordBatch, name: &str) -> Result<Vec<f32>, Error> {
    let a = column(batch, name, &DataType::Float32)?;
    Ok(a.as_primitive::<Float32Type>().values().to_vec())
}

pub fn string_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<String>>, Error> {
    let to = DataType::List(std::sync::Arc::new(Field::new("item", DataType::Utf8, true)));
    let a = column(batch, name, &to)?;
    Ok(a.as_list::<i32>()
        .iter()
        .map(|v| v.map(|v| v.as_string::<i32>().iter().flatten().map(str::to_string).collect()).unwrap_or_default())
        .collect())
}

pub fn f32_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<f32>>, Error> {
    let to = DataType::List(std::sync::Arc::new(Field::new("item", DataType::Float32, true)));
    let a = column(batch, name, &to)?;
    Ok(a.as_list::<i32>()
        .iter()
        .map(|v| v.map(|v| v.as_primitive::<Float32Type>().values().to_vec()).unwrap_or_default())
        .collect())
}

/// The item field of a list column of `table_schema` (what a list built for it must carry).
pub fn list_item_field(table_schema: &arrow::datatypes::Schema, column: &str) -> Result<FieldRef, Error> {
    match table_schema.field_with_name(column)?.data_type() {
        DataType::List(item) => Ok(item.clone()),
        _ => Err(Error::Internal(format!("{column} is not a list column"))),
    }
}

/// A list column of `table_schema` built from `rows`, with the schema's exact item field.
pub fn string_list_array<'a>(
    table_schema: &arrow::datatypes::Schema,
    column: &str,
    rows: impl Iterator<Item = &'a Vec<String>>,
) -> Result<std::sync::Arc<dyn Array>, Error> {
    let item = list_item_field(table_schema, column)?;
    let mut list = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new()).with_field(item);
    for keywords in rows {
        list.append_value(keywords.iter().map(Some));
    }
    Ok(std::sync::Arc::new(list.finish()))
}
