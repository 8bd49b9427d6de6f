//! The LREM triple engine: turns a search query log and an item catalogue into
//! `<query, CoT, item>` training triples by calling OpenAI-compatible model endpoints, with every
//! intermediate table kept as Parquet and queryable with SQL.
//!
//! - [`datagen`]: the deterministic sample world used by tests, demos and benchmarks;
//! - [`sql`]: read-only SQL over a run directory or the inputs (`lrem-pipeline sql`);
//! - [`parquet_out`]: atomic Parquet writes shared by every stage.

pub mod datagen;
mod error;
pub mod parquet_out;
pub mod sql;

pub use error::Error;
