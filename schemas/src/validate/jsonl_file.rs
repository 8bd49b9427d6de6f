//! JSON Lines inputs: one JSON object per line; blank lines are ignored.

use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow::datatypes::DataType;
use serde_json::Value;

use super::cells::{Cell, parse_text};
use super::{Checker, ProblemKind};
use crate::Error;

pub(super) fn check(path: &Path, checker: &mut Checker<'_>) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let spec = checker.spec().clone();
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = checker.next_row_number();
        let object = match std::str::from_utf8(&line) {
            Err(e) => {
                checker.problem(None, ProblemKind::NotUtf8, Some(row), || {
                    format!("line {line_no}: bytes that are not UTF-8 at byte {} of the line", e.valid_up_to())
                });
                None
            }
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => Some(map),
                Ok(_) => {
                    checker.problem(None, ProblemKind::Unreadable, Some(row), || {
                        format!("line {line_no} is not a JSON object")
                    });
                    None
                }
                Err(e) => {
                    checker.problem(None, ProblemKind::Unreadable, Some(row), || {
                        format!("line {line_no} is not valid JSON: {e}")
                    });
                    None
                }
            },
        };
        let Some(object) = object else {
            checker.row(&vec![Cell::Skip; spec.columns.len()]);
            continue;
        };
        let mut cells = Vec::with_capacity(spec.columns.len());
        for column in &spec.columns {
            let cell = match object.get(column.name) {
                None | Some(Value::Null) => Ok(Cell::Null),
                Some(value) => json_cell(value, &column.data_type),
            };
            cells.push(cell.unwrap_or_else(|message| {
                checker.problem(Some(column.name), ProblemKind::WrongType, Some(row), || {
                    format!("line {line_no}: {message}")
                });
                Cell::Skip
            }));
        }
        checker.row(&cells);
    }
    Ok(())
}

fn json_cell<'a>(value: &'a Value, data_type: &DataType) -> Result<Cell<'a>, String> {
    let expected = crate::tables::type_name(data_type);
    let bad = || format!("value {value} is not a valid {expected}");
    match (data_type, value) {
        (DataType::Int32 | DataType::Int64, Value::Number(n)) => n.as_i64().map(Cell::Int).ok_or_else(bad),
        (DataType::UInt64, Value::Number(n)) => n.as_u64().map(Cell::UInt).ok_or_else(bad),
        (DataType::Float32 | DataType::Float64, Value::Number(n)) => n.as_f64().map(Cell::Float).ok_or_else(bad),
        (DataType::Boolean, Value::Bool(b)) => Ok(Cell::Bool(*b)),
        (DataType::List(_) | DataType::LargeList(_), Value::Array(_)) => Ok(Cell::Nested),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Date32, Value::String(s)) => {
            parse_text(s, data_type)
        }
        _ => Err(bad()),
    }
}
