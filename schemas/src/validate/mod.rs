//! Checks an input file (Parquet, CSV or JSONL, or a directory of Parquet parts) against a table's
//! schema and reports *every* problem, each with the file, the column and the first offending row.
//!
//! Rows are numbered from 1 in data order (a CSV header is not a row; CSV problems also give the
//! line). Each kind of problem is reported once per column with its first row and a count, so a
//! file with a million bad rows gives a short report rather than a million lines.

mod cells;
mod csv_file;
mod jsonl_file;
mod parquet_file;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::tables::TableSpec;
use cells::Cell;

/// Limits applied while validating.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Longest accepted text value, in bytes (a query log is not the place for documents).
    pub max_text_bytes: usize,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self { max_text_bytes: 4096 }
    }
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    EmptyFile,
    NoRows,
    Unreadable,
    MissingColumn,
    WrongType,
    Null,
    NotUtf8,
    TooLong,
    Duplicate,
    RaggedRow,
    /// A count below zero.
    Negative,
    /// A count above the count it is part of (more clicks than impressions).
    AboveWhole,
}

/// One kind of problem in one column of one file, with its first occurrence.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub column: Option<String>,
    pub kind: ProblemKind,
    /// First offending row (1-based), when the problem is about rows.
    pub first_row: Option<u64>,
    /// What was found at the first offending row, and what was expected.
    pub detail: String,
    /// Offending rows in all (1 for file-level problems).
    pub count: u64,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(c) = &self.column {
            write!(f, ": column \"{c}\"")?;
        }
        if let Some(r) = self.first_row {
            write!(f, ", row {r}")?;
        }
        write!(f, ": {}", self.detail)?;
        if self.count > 1 {
            write!(f, " ({} rows in all)", self.count)?;
        }
        Ok(())
    }
}

/// All problems found in one input, in the order they were first met.
#[derive(Debug, Clone)]
pub struct Report {
    pub table: &'static str,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{n} problem{} in the `{}` input:", if n == 1 { "" } else { "s" }, self.table)?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Validates the input at `path` as table `spec`; returns the number of rows when it is clean.
pub fn validate(path: &Path, spec: &TableSpec, options: &ValidateOptions) -> Result<u64, Error> {
    let files = input_files(path, spec.name)?;
    let mut checker = Checker::new(spec, options);
    for file in &files {
        checker.file = file.clone();
        checker.rows_in_file = 0;
        let len = std::fs::metadata(file).map_err(|source| Error::Io { path: file.clone(), source })?.len();
        if len == 0 {
            checker.file_problem(ProblemKind::EmptyFile, "the file is empty (0 bytes)".into());
            continue;
        }
        match Format::of(file)? {
            Format::Parquet => parquet_file::check(file, &mut checker)?,
            Format::Csv => csv_file::check(file, &mut checker)?,
            Format::Jsonl => jsonl_file::check(file, &mut checker)?,
        }
    }
    if checker.total_rows == 0 && checker.problems.is_empty() {
        checker.file = path.to_owned();
        checker.file_problem(ProblemKind::NoRows, "no data rows: the table is empty".into());
    }
    if checker.problems.is_empty() {
        Ok(checker.total_rows)
    } else {
        Err(Error::Invalid(Box::new(Report { table: spec.name, problems: checker.problems })))
    }
}

/// The file formats an input may come in, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    Jsonl,
}

impl Format {
    pub fn of(path: &Path) -> Result<Self, Error> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
            _ => Err(Error::UnsupportedFormat { path: path.to_owned() }),
        }
    }
}

/// A file, or the Parquet parts of a directory (searched recursively, in path order).
pub fn input_files(path: &Path, table: &'static str) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::MissingInput { table, path: path.to_owned() },
        _ => Error::Io { path: path.to_owned(), source },
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    collect_parquet(path, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::MissingInput { table, path: path.join("*.parquet") });
    }
    Ok(files)
}

fn collect_parquet(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io { path: dir.to_owned(), source })?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue; // temp files and markers of an unfinished write
        }
        if path.is_dir() {
            collect_parquet(&path, out)?;
        } else if name.ends_with(".parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Row-level checks shared by every format: nulls in non-null columns, text length, unique keys.
pub(crate) struct Checker<'s> {
    spec: &'s TableSpec,
    options: &'s ValidateOptions,
    file: PathBuf,
    rows_in_file: u64,
    total_rows: u64,
    key_columns: Vec<usize>,
    /// Positions of the columns of [`TableSpec::count_rules`].
    non_negative: Vec<usize>,
    at_most: Vec<(usize, usize)>,
    /// Hash of each key seen → (file index, row) where it was first seen.
    seen_keys: HashMap<u128, (PathBuf, u64)>,
    problems: Vec<Problem>,
    index: HashMap<(PathBuf, Option<String>, ProblemKind), usize>,
}

impl<'s> Checker<'s> {
    fn new(spec: &'s TableSpec, options: &'s ValidateOptions) -> Self {
        let key_columns = spec
            .unique_key
            .iter()
            .map(|k| spec.columns.iter().position(|c| c.name == *k).expect("key is a column"))
            .collect();
        let at = |name: &str| spec.columns.iter().position(|c| c.name == name).expect("a count rule names a column");
        let rules = spec.count_rules();
        Self {
            spec,
            options,
            file: PathBuf::new(),
            rows_in_file: 0,
            total_rows: 0,
            key_columns,
            non_negative: rules.non_negative.iter().map(|c| at(c)).collect(),
            at_most: rules.at_most.iter().map(|(part, whole)| (at(part), at(whole))).collect(),
            seen_keys: HashMap::new(),
            problems: Vec::new(),
            index: HashMap::new(),
        }
    }

    pub(crate) fn spec(&self) -> &TableSpec {
        self.spec
    }

    /// Records a problem; repeated ones only raise the count of the first.
    pub(crate) fn problem(
        &mut self,
        column: Option<&str>,
        kind: ProblemKind,
        row: Option<u64>,
        detail: impl FnOnce() -> String,
    ) {
        let key = (self.file.clone(), column.map(str::to_string), kind);
        if let Some(&i) = self.index.get(&key) {
            self.problems[i].count += 1;
            return;
        }
        self.index.insert(key, self.problems.len());
        self.problems.push(Problem {
            file: self.file.clone(),
            column: column.map(str::to_string),
            kind,
            first_row: row,
            detail: detail(),
            count: 1,
        });
    }

    pub(crate) fn file_problem(&mut self, kind: ProblemKind, detail: String) {
        self.problem(None, kind, None, || detail);
    }

    /// Checks one row; `cells` follows `spec.columns`, with `Cell::Skip` for columns already
    /// reported as missing or mistyped.
    pub(crate) fn row(&mut self, cells: &[Cell<'_>]) {
        self.rows_in_file += 1;
        self.total_rows += 1;
        let row = self.rows_in_file;
        let spec = self.spec;
        for (column, cell) in spec.columns.iter().zip(cells) {
            match cell {
                Cell::Null if !column.nullable => {
                    self.problem(Some(column.name), ProblemKind::Null, Some(row), || {
                        "null or empty value in a column that must always have one".into()
                    });
                }
                Cell::Text(t) if t.len() > self.options.max_text_bytes => {
                    let limit = self.options.max_text_bytes;
                    self.problem(Some(column.name), ProblemKind::TooLong, Some(row), || {
                        format!("value is {} bytes long, the limit is {limit} bytes (starts {:?})", t.len(), preview(t))
                    });
                }
                _ => {}
            }
        }
        self.check_counts(cells, row);
        self.check_key(cells, row);
    }

    fn check_counts(&mut self, cells: &[Cell<'_>], row: u64) {
        let columns = &self.spec.columns;
        for i in self.non_negative.clone() {
            if let Cell::Int(v) = cells[i]
                && v < 0
            {
                self.problem(Some(columns[i].name), ProblemKind::Negative, Some(row), || {
                    format!("value {v} is negative; a count cannot be")
                });
            }
        }
        for (part, whole) in self.at_most.clone() {
            if let (Cell::Int(p), Cell::Int(w)) = (cells[part], cells[whole])
                && p > w
                && w >= 0
            {
                let (pn, wn) = (columns[part].name, columns[whole].name);
                self.problem(Some(pn), ProblemKind::AboveWhole, Some(row), || {
                    format!("{pn} {p} > {wn} {w}: a row cannot have more {pn} than {wn}")
                });
            }
        }
    }

    fn check_key(&mut self, cells: &[Cell<'_>], row: u64) {
        if self.key_columns.is_empty() || self.key_columns.iter().any(|&i| matches!(cells[i], Cell::Null | Cell::Skip))
        {
            return;
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut shown = Vec::new();
        for &i in &self.key_columns {
            let text = cells[i].to_string();
            hasher.update(text.as_bytes());
            hasher.update(&[0xff]); // separator no UTF-8 text contains
            shown.push(text);
        }
        let hash = hasher.digest128();
        if let Some((first_file, first_row)) = self.seen_keys.get(&hash) {
            let same = *first_file == self.file;
            let at =
                if same { format!("row {first_row}") } else { format!("row {first_row} of {}", first_file.display()) };
            let columns = self.spec.unique_key.join(", ");
            let value = shown.join(", ");
            let key_name = if self.spec.unique_key.len() == 1 { columns.clone() } else { format!("({columns})") };
            self.problem(Some(&columns), ProblemKind::Duplicate, Some(row), || {
                format!("duplicate key {key_name} = {value}, first seen at {at}; keys must be unique")
            });
        } else {
            self.seen_keys.insert(hash, (self.file.clone(), row));
        }
    }

    pub(crate) fn next_row_number(&self) -> u64 {
        self.rows_in_file + 1
    }
}

/// The start of a long value, for messages.
pub(crate) fn preview(text: &str) -> String {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() { format!("{}…", &text[..end]) } else { text.to_string() }
}

#[cfg(test)]
mod tests;
