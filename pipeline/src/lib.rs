//! The LREM triple engine: turns a search query log and an item catalogue into
//! `<query, CoT, item>` training triples by calling OpenAI-compatible model endpoints, with every
//! intermediate table kept as Parquet and queryable with SQL.
//!
//! - [`datagen`]: the deterministic sample world used by tests, demos and benchmarks;
//! - [`sql`]: read-only SQL over a run directory or the inputs (`lrem-pipeline sql`);
//! - [`run`]: the DAG runner (`lrem-pipeline run`) and resume; [`manifest`]: what a run directory
//!   holds, per stage;
//! - [`stages`]: one module per stage; [`client`]: the HTTP model clients and response cache;
//! - [`index`]: exact top-K vector search for retrieval sets ① and ②;
//! - [`parquet_out`]: Parquet writes shared by every stage, to a local disk or an object store;
//! - [`cluster`]: Slurm and Kubernetes recipes of a sharded run (`lrem-pipeline slurm`, `k8s`);
//! - [`gc`]: deletes the files no commit marker names (`lrem-pipeline gc`).

pub mod client;
pub mod cluster;
pub mod datagen;
mod error;
pub mod gc;
pub mod index;
pub mod local_copy;
pub mod manifest;
pub mod parquet_out;
pub mod progress;
pub mod run;
pub mod sql;
pub mod stages;

pub use error::Error;
