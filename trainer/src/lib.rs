//! The LREM trainer: consumes the pipeline's Parquet triples. This crate reads Parquet with the
//! `parquet`/`arrow` crates through the `lrem-schemas` contract and never links DataFusion.
//!
//! - [`triples`]: reading `triples_cold_start` / `triples_rl` from a run directory.
//! - [`model`]: the decoder and encoder in Burn, their loaders, tokenizers and generation.
//! - [`serve`]: the OpenAI-compatible server over those models.
//! - [`train`]: cold-start training (NTP + InfoNCE, GradCache, checkpoints, data parallel).
//! - [`dist`]: the process group of a data-parallel run.
//! - [`rl`]: GRPO's rewards, advantages and clipped objective.
//! - [`backend`]: the backend aliases (CPU, CPU with gradients, CUDA).

pub mod backend;
mod contract;
pub mod dist;
mod error;
pub mod eval;
pub mod format;
pub mod holdout;
pub mod lrem;
pub mod model;
pub mod plot;
pub mod rl;
pub mod serve;
pub mod train;
pub mod triples;

pub use error::{Context, Error, Result};
