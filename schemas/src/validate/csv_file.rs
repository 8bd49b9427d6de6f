//! CSV inputs: a header row, then one record per row. Read with the `csv` crate as raw bytes so
//! that a ragged row or a non-UTF-8 byte is reported with its row and line instead of failing the
//! whole read.

use std::path::Path;

use super::cells::{Cell, parse_text};
use super::{Checker, ProblemKind};
use crate::Error;

pub(super) fn check(path: &Path, checker: &mut Checker<'_>) -> Result<(), Error> {
    let io = |source: csv::Error| Error::Io { path: path.to_owned(), source: std::io::Error::other(source) };
    let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_path(path).map_err(io)?;
    let header = reader.byte_headers().map_err(io)?.clone();
    let spec = checker.spec().clone();
    let positions: Vec<Option<usize>> = spec
        .columns
        .iter()
        .map(|c| header.iter().position(|h| std::str::from_utf8(h).map(str::trim) == Ok(c.name)))
        .collect();
    for (column, position) in spec.columns.iter().zip(&positions) {
        if position.is_none() && !column.nullable {
            let found: Vec<String> = header.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
            checker.problem(Some(column.name), ProblemKind::MissingColumn, None, || {
                format!("missing from the header (found: {})", found.join(", "))
            });
        }
    }
    let mut record = csv::ByteRecord::new();
    loop {
        let row = checker.next_row_number();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                checker.problem(None, ProblemKind::Unreadable, Some(row), || format!("unreadable CSV: {e}"));
                break;
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != header.len() {
            checker.problem(None, ProblemKind::RaggedRow, Some(row), || {
                format!("line {line} has {} fields but the header has {}", record.len(), header.len())
            });
            checker.row(&vec![Cell::Skip; spec.columns.len()]);
            continue;
        }
        let mut cells = Vec::with_capacity(spec.columns.len());
        for (column, position) in spec.columns.iter().zip(&positions) {
            cells.push(match position {
                // A missing column was reported once already; its absent values are not nulls to report again.
                None => Cell::Skip,
                Some(p) => match std::str::from_utf8(&record[*p]) {
                    Err(e) => {
                        checker.problem(Some(column.name), ProblemKind::NotUtf8, Some(row), || {
                            format!("line {line}: bytes that are not UTF-8 at byte {} of the value", e.valid_up_to())
                        });
                        Cell::Skip
                    }
                    Ok("") => Cell::Null,
                    Ok(text) => match parse_text(text, &column.data_type) {
                        Ok(cell) => cell,
                        Err(message) => {
                            checker.problem(Some(column.name), ProblemKind::WrongType, Some(row), || {
                                format!("line {line}: {message}")
                            });
                            Cell::Skip
                        }
                    },
                },
            });
        }
        checker.row(&cells);
    }
    Ok(())
}
