//! One value of a row, as the row checks see it, whatever format it came from.

use std::fmt;

use arrow::array::types::Date32Type;
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::DataType;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Null,
    /// The column is missing or mistyped and was reported already.
    Skip,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Text(&'a str),
    Date(i32),
    /// A nested value (list, struct): only its presence is checked.
    Nested,
}

impl fmt::Display for Cell<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Null | Cell::Skip => write!(f, "null"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::UInt(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v}"),
            Cell::Bool(v) => write!(f, "{v}"),
            Cell::Text(v) => write!(f, "{:?}", super::preview(v)),
            Cell::Date(v) => match Date32Type::to_naive_date_opt(*v) {
                Some(d) => write!(f, "{d}"),
                None => write!(f, "day {v}"),
            },
            Cell::Nested => write!(f, "[…]"),
        }
    }
}

/// Parses a text field (CSV, or a JSON string) as `data_type`; the error says what was expected.
pub(crate) fn parse_text<'a>(text: &'a str, data_type: &DataType) -> Result<Cell<'a>, String> {
    let expected = crate::tables::type_name(data_type);
    let bad = || format!("value {:?} is not a valid {expected}", super::preview(text));
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Ok(Cell::Text(text)),
        DataType::Int32 | DataType::Int64 => text.trim().parse().map(Cell::Int).map_err(|_| bad()),
        DataType::UInt64 => text.trim().parse().map(Cell::UInt).map_err(|_| bad()),
        DataType::Float32 | DataType::Float64 => text.trim().parse().map(Cell::Float).map_err(|_| bad()),
        DataType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Cell::Bool(true)),
            "false" => Ok(Cell::Bool(false)),
            _ => Err(bad()),
        },
        DataType::Date32 => {
            Date32Type::parse(text.trim()).map(Cell::Date).ok_or_else(|| format!("{} (expected YYYY-MM-DD)", bad()))
        }
        _ => Err(format!("{expected} columns cannot be read from text; use Parquet")),
    }
}
