//! The stages of the DAG. [`DAG`] lists them in the order they run; each is one module here.
//!
//! A stage is a [`Stage`]. Relational stages are SQL files in `sql/stages/` run by DataFusion
//! and streamed into Parquet ([`relational`]). Streaming stages (the model calls, the CoT
//! post-processing) supply an input query in `sql/stages/`, `process` and their output rows
//! ([`streaming::Streaming`]); [`streaming::run`] does counting, progress, failures, parts and
//! resume for all of them.
//!
//! Adding a stage: a module here, its SQL in `sql/stages/`, a line in [`DAG`], and its table in
//! `lrem_schemas::tables`.

pub(crate) mod columns;
pub mod cot_rules;
pub mod keyword_parse;
mod prompts;
mod relational;
mod retrieval;
mod stage;
mod streaming;

mod cot;
mod gain;
mod hard_queries;
mod item_embeddings;
mod keywords;
mod queries;
mod reasoning;
mod relevance;
mod retrieval_1;
mod retrieval_2;
mod triples;

use std::marker::PhantomData;

pub use lrem_schemas::Shard;
pub use prompts::{Prompts, render};
pub use stage::{Counts, Scope, Stage, StageCtx, fingerprint, preview};

use crate::Error;
use retrieval::Retrieval;
use streaming::Streamed;

/// The DAG, in the order the stages run; each stage names its upstream stages, which come
/// earlier here.
pub static DAG: [&dyn Stage; 11] = [
    &queries::Queries,
    &Streamed(item_embeddings::ItemEmbeddings),
    &Streamed(Retrieval::<retrieval_1::Retrieval1>(PhantomData)),
    &hard_queries::HardQueries,
    &Streamed(reasoning::Reasoning),
    &Streamed(keywords::Keywords),
    &Streamed(cot::Cot),
    &Streamed(Retrieval::<retrieval_2::Retrieval2>(PhantomData)),
    &gain::Gain,
    &Streamed(relevance::Relevance),
    &triples::Triples,
];

/// A step of a sharded run: the stages up to `until` (to the end when `None`), run once unsharded
/// or by every shard. Each needs the phases before it done in full, so batch systems chain them
/// (`lrem-pipeline slurm`, `k8s`); an unsharded run goes through all of them in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    pub name: &'static str,
    pub until: Option<&'static str>,
    pub sharded: bool,
}

pub static PHASES: [Phase; 5] = [
    Phase { name: "queries", until: Some("queries"), sharded: false },
    Phase { name: "item-embeddings", until: Some("item_embeddings"), sharded: true },
    Phase { name: "retrieval-1", until: Some("retrieval_1"), sharded: true },
    Phase { name: "hard-queries", until: Some("hard_queries"), sharded: false },
    Phase { name: "per-query", until: None, sharded: true },
];

/// The stage called `name`, or an error listing them all.
pub fn find(name: &str) -> Result<&'static dyn Stage, Error> {
    DAG.iter().copied().find(|s| s.name() == name).ok_or_else(|| {
        let valid: Vec<_> = DAG.iter().map(|s| s.name()).collect();
        Error::Usage(format!("no stage named `{name}`; the stages are: {}", valid.join(", ")))
    })
}

/// Where `stage` is in [`DAG`] (the order the stages run).
pub fn position(stage: &dyn Stage) -> usize {
    DAG.iter().position(|s| s.name() == stage.name()).expect("every stage is in the DAG")
}
