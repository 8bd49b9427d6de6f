//! The contract between the two halves of LREM.
//!
//! `lrem-pipeline` writes tables and `lrem-trainer` reads them; both depend on this crate and never
//! on each other. It holds:
//! - [`tables`]: the Arrow schema of every table in the DAG, one doc line per column;
//! - [`validate()`]: checks an input file against its schema and reports every problem with the
//!   file, column and first offending row;
//! - [`query_id()`]: the stable key of a query, computed identically by both halves;
//! - [`config`]: the typed TOML configuration of a pipeline run;
//! - [`holdout`]: which hard queries of the sample world training may see, by need;
//! - [`Triple`]: the row both halves exchange, with its Arrow conversions;
//! - [`RunDir`]: the layout of a run directory (tables, parts, shards, manifests, cache);
//! - [`store`]: where its bytes live (a local disk or an object store), and [`commit`]: which
//!   files of it a reader may read.

pub mod commit;
pub mod config;
mod error;
pub mod holdout;
mod query_id;
pub mod rows;
pub mod run_dir;
pub mod store;
pub mod tables;
pub mod validate;

pub use error::Error;
pub use query_id::{normalize_query, normalize_query_into, query_id, query_id_with};
pub use rows::Triple;
pub use run_dir::{Part, RunDir, Shard};
pub use tables::{TableKind, TableSpec, all_tables, table};
pub use validate::{ValidateOptions, validate};
