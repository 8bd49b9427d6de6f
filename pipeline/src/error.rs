use std::path::{Path, PathBuf};

/// Errors of the pipeline library. `Internal` is a bug; every other variant is about the user's
/// input, configuration or environment and says what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Schema(#[from] lrem_schemas::Error),

    /// A run directory's storage (a local disk or an object store): names the location.
    #[error(transparent)]
    Store(#[from] lrem_schemas::store::StoreError),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{0}")]
    Usage(String),

    /// DataFusion's own error, kept whole (not marked as the source: its text is already the
    /// message, and `{:#}` would print it twice).
    #[error("SQL: {0}")]
    Sql(Box<datafusion::error::DataFusionError>),

    #[error("SQL: {0}")]
    SqlSyntax(datafusion::sql::sqlparser::parser::ParserError),

    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("endpoint `{endpoint}`: {message}")]
    Endpoint { endpoint: String, message: String },

    #[error("response cache: {0}")]
    Cache(String),

    #[error("internal error (a bug; please report it): {0}")]
    Internal(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_owned(), source }
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Sql(Box::new(e))
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for Error {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        Error::SqlSyntax(e)
    }
}
