//! Cold start (LREM stage 1): next-token prediction on the CoT plus InfoNCE on `<emb>`, trained
//! on the pipeline's `triples_cold_start`.
//!
//! A run directory holds `config.toml` (as resolved), `skipped.jsonl`, `metrics.jsonl`,
//! `curves.svg`, `checkpoints/step-NNNNNN/` and, at the end, `model/` (a Hugging Face folder
//! with the LREM tokens and `lrem.json`, which `serve` and `eval` load).
//!
//! [`cold_start`] is [`setup`] (the model, the data, the schedule, a resumed state), the step
//! loop of [`steps`], [`checkpoint`]s along the way, and the export of the model at the end.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod recompute;
mod setup;
pub mod step;
mod steps;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::tensor::backend::AutodiffBackend;

use crate::dist::ProcessGroup;
use crate::error::Result;
use crate::format::LremSettings;
use checkpoint::TrainState;
use config::TrainConfig;
use metrics::StepRecord;

/// How a run is driven (not part of its configuration: it changes no result).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest checkpoint of the run directory.
    pub resume: bool,
    /// Stop (after checkpointing) once this many optimizer steps are done: an interruption.
    pub stop_after: Option<usize>,
    /// Set from outside (Ctrl-C): the run checkpoints after the step in progress and stops.
    pub interrupt: Option<Arc<AtomicBool>>,
    pub progress: bool,
    /// The ranks of a data-parallel run (one process by default). Every rank runs the same
    /// schedule on its share of each batch; rank 0 alone writes the run directory.
    pub group: Arc<ProcessGroup>,
}

pub struct Outcome {
    pub state: TrainState,
    pub records: Vec<StepRecord>,
    /// The exported model folder (absent when stopped early).
    pub model_dir: Option<PathBuf>,
    /// Stopped by [`RunOptions::interrupt`]; the last checkpoint holds the last step.
    pub interrupted: bool,
}

pub fn cold_start<B: AutodiffBackend>(
    config: &TrainConfig,
    out: &Path,
    options: &RunOptions,
    device: &B::Device,
) -> Result<Outcome> {
    let _products = crate::model::precision::autocast(config.model.precision.products::<B>(device)?);
    let _fused = crate::model::layers::fuse_products(config.model.fuse_products);
    let run = setup::Setup::<B>::new(config, out, options, device)?;
    let (lm_config, tokenizer) = (run.lm_config.clone(), run.tokenizer.clone());
    let trained = steps::train(run, config, out, options)?;
    if !options.group.is_root() {
        let state = trained.state;
        return Ok(Outcome { state, records: Vec::new(), model_dir: None, interrupted: trained.interrupted });
    }
    let records = metrics::read(&out.join("metrics.jsonl"))?;
    if !records.is_empty() {
        metrics::plot(&records, &out.join("curves.svg"))?;
    }
    let state = trained.state;
    let (interrupted, done) = (trained.interrupted, state.step >= state.total_steps);
    if !done {
        return Ok(Outcome { state, records, model_dir: None, interrupted });
    }
    let model_dir = out.join("model");
    crate::model::export::export_decoder(&trained.model, &lm_config, &tokenizer, &model_dir)?;
    let settings = LremSettings {
        system_prompt: config.model.system_prompt.clone(),
        direct: !config.data.cot,
        cot_penalties: Default::default(),
    };
    std::fs::write(model_dir.join("lrem.json"), serde_json::to_vec_pretty(&settings)?)?;
    Ok(Outcome { state, records, model_dir: Some(model_dir), interrupted })
}
