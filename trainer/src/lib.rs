//! The LREM trainer: consumes the pipeline's Parquet triples. This crate reads Parquet with the
//! `parquet`/`arrow` crates through the `lrem-schemas` contract and never links DataFusion.
//!
//! - [`triples`]: reading `triples_cold_start` / `triples_rl` from a run directory.

pub mod triples;
