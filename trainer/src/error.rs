//! The library's one error type, after candle's: a message, or a context wrapped around the
//! error that caused it (kept as the source, not flattened into the text), or one of the typed
//! errors of the crates below. Binaries turn it into `anyhow` and print the chain (`{:#}`).

pub type Result<T, E = Error> = std::result::Result<T, E>;

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What is wrong, with the file, field or value it concerns.
    #[error("{0}")]
    Msg(String),

    /// `context` says what was being done; `source` is why it failed.
    #[error("{context}")]
    Context { context: String, source: Cause },

    #[error(transparent)]
    Triples(#[from] crate::triples::Error),

    #[error(transparent)]
    Schema(#[from] lrem_schemas::Error),

    #[error(transparent)]
    Json(#[from] serde_json::Error),

    #[error(transparent)]
    Template(#[from] minijinja::Error),

    #[error(transparent)]
    TomlWrite(#[from] toml::ser::Error),

    #[error(transparent)]
    Io(#[from] std::io::Error),

    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),

    /// The constrained-decoding engine (llguidance) reports with anyhow.
    #[error(transparent)]
    Grammar(#[from] anyhow::Error),
}

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Msg(message.into())
    }

    /// This error as the source of a wider one.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context { context: context.into(), source: Box::new(self) }
    }
}

/// `.context(…)` and `.with_context(|| …)` on results and options, as with anyhow.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context { context: context.into(), source: Box::new(e) })
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context { context: context().into(), source: Box::new(e) })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::Msg(context.into()))
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::Msg(context().into()))
    }
}

/// `return Err(Error::Msg(format!(…)))`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Msg(format!($($arg)*)))
    };
}

/// `Error::Msg(format!(…))`.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::Error::Msg(format!($($arg)*))
    };
}
