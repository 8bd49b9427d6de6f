//! Parquet inputs: the footer's schema is checked first, then rows stream in batches (memory stays
//! bounded by the batch size, not the file).

use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::cells::Cell;
use super::{Checker, ProblemKind};
use crate::Error;
use crate::tables::type_name;

pub(super) fn check(path: &Path, checker: &mut Checker<'_>) -> Result<(), Error> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let builder = match ParquetRecordBatchReaderBuilder::try_new(file) {
        Ok(b) => b,
        Err(e) => {
            checker.file_problem(ProblemKind::Unreadable, format!("not a readable Parquet file: {e}"));
            return Ok(());
        }
    };
    let spec = checker.spec().clone();
    let schema = builder.schema().clone();
    // For each spec column: its index in the file and the type it is read as, if usable.
    let mut sources: Vec<Option<(usize, DataType)>> = Vec::new();
    for column in &spec.columns {
        let found = schema.fields().iter().position(|f| f.name() == column.name);
        sources.push(match found {
            None => {
                if !column.nullable {
                    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                    checker.problem(Some(column.name), ProblemKind::MissingColumn, None, || {
                        format!("missing from the file (found: {})", names.join(", "))
                    });
                }
                None
            }
            Some(i) => {
                let actual = schema.field(i).data_type();
                match canonical(actual, &column.data_type) {
                    Some(read_as) => Some((i, read_as)),
                    None => {
                        checker.problem(Some(column.name), ProblemKind::WrongType, None, || {
                            format!("has type {}, expected {}", type_name(actual), type_name(&column.data_type))
                        });
                        None
                    }
                }
            }
        });
    }
    let roots: Vec<usize> = sources.iter().flatten().map(|(i, _)| *i).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(|e| parquet_error(path, e))?;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let after = checker.next_row_number();
                checker.problem(None, ProblemKind::Unreadable, Some(after), || {
                    format!("cannot decode rows from here on: {e}")
                });
                break;
            }
        };
        let mut arrays: Vec<Option<ArrayRef>> = Vec::with_capacity(sources.len());
        for (column, source) in spec.columns.iter().zip(&sources) {
            arrays.push(match source {
                None => None,
                Some((_, read_as)) => {
                    let array = batch.column_by_name(column.name).expect("projected column");
                    Some(
                        cast(array, read_as)
                            .map_err(|e| Error::Io { path: path.to_owned(), source: std::io::Error::other(e) })?,
                    )
                }
            });
        }
        for row in 0..batch.num_rows() {
            let cells: Vec<Cell<'_>> = arrays.iter().map(|a| a.as_ref().map_or(Cell::Skip, |a| cell(a, row))).collect();
            checker.row(&cells);
        }
    }
    Ok(())
}

/// The type a column of type `actual` is read as to check it as `expected`, or `None` when no
/// lossless reading exists (a float where an id is expected, a string where a number is).
fn canonical(actual: &DataType, expected: &DataType) -> Option<DataType> {
    use DataType::*;
    let ok = match expected {
        Utf8 | LargeUtf8 | Utf8View => matches!(actual, Utf8 | LargeUtf8 | Utf8View),
        Int32 | Int64 => matches!(actual, Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32),
        UInt64 => matches!(actual, UInt8 | UInt16 | UInt32 | UInt64),
        Float32 | Float64 => matches!(actual, Float16 | Float32 | Float64),
        Date32 => matches!(actual, Date32 | Date64 | Timestamp(_, _)),
        List(_) | LargeList(_) => matches!(actual, List(_) | LargeList(_)),
        other => actual == other,
    };
    ok.then(|| match expected {
        Utf8 | LargeUtf8 | Utf8View => Utf8,
        Int32 | Int64 => Int64,
        Float32 | Float64 => Float64,
        other => other.clone(),
    })
}

fn cell(array: &ArrayRef, row: usize) -> Cell<'_> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt64 => Cell::UInt(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Date32 => Cell::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        _ => Cell::Nested,
    }
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::Io { path: path.to_owned(), source: std::io::Error::other(e) }
}
