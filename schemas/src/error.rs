use std::path::PathBuf;

use crate::validate::Report;

/// Errors of this crate. Every variant is a problem with the caller's input or files (none is a
/// bug), and every message names the file, table or key involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("the `{table}` input {path} does not exist")]
    MissingInput { table: &'static str, path: PathBuf },

    #[error("{path}: unsupported file type; use .parquet, .csv or .jsonl (or a directory of .parquet parts)")]
    UnsupportedFormat { path: PathBuf },

    #[error("{0}")]
    Invalid(Box<Report>),

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("no table named `{name}`; the tables are: {valid}")]
    UnknownTable { name: String, valid: String },
}
