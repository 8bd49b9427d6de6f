//! Cold start (LREM stage 1): next-token prediction on the CoT plus InfoNCE on `<emb>`, trained
//! on the pipeline's `triples_cold_start`.
//!
//! A run directory holds `config.toml` (as resolved), `skipped.jsonl`, `metrics.jsonl`,
//! `curves.svg`, `checkpoints/step-NNNNNN/` and, at the end, `model/` (a Hugging Face folder
//! with the LREM tokens and `lrem.json`, which `serve` and `eval` load).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod step;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{GradientsAccumulator, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use crate::model::LanguageModel;
use crate::model::decoder::Decoder;
use crate::triples::{self, Split};
use checkpoint::TrainState;
use config::TrainConfig;
use data::{Example, Prompting, epoch_batches, prepare};
use metrics::StepRecord;
use step::{LossParts, batch_gradients};

/// How a run is driven (not part of its configuration: it changes no result).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest checkpoint of the run directory.
    pub resume: bool,
    /// Stop (after checkpointing) once this many optimizer steps are done: an interruption.
    pub stop_after: Option<usize>,
    pub progress: bool,
}

pub struct Outcome {
    pub state: TrainState,
    pub records: Vec<StepRecord>,
    /// The exported model folder (absent when stopped early).
    pub model_dir: Option<PathBuf>,
}

/// The `lrem.json` beside an exported model: how its sequences are rendered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LremSettings {
    pub system_prompt: Option<String>,
}

/// The batches of every epoch and the steps they make.
fn schedule(examples: &[Example], config: &TrainConfig) -> (Vec<Vec<Vec<usize>>>, usize) {
    let o = &config.optim;
    let epochs: Vec<_> = (0..o.epochs)
        .map(|e| epoch_batches(examples, o.batch_size, config.data.bucket_batches, config.data.seed, e))
        .collect();
    let mut total: usize = epochs.iter().map(|b| b.len().div_ceil(o.grad_accum)).sum();
    if o.max_steps > 0 {
        total = total.min(o.max_steps);
    }
    (epochs, total)
}

pub fn cold_start<B: AutodiffBackend>(
    config: &TrainConfig,
    out: &Path,
    options: &RunOptions,
    device: &B::Device,
) -> Result<Outcome> {
    config.validate()?;
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let existing = checkpoint::list(out)?;
    if !options.resume && !existing.is_empty() {
        bail!("{}: holds checkpoints already; pass --resume to continue, or choose a new directory", out.display());
    }
    std::fs::write(out.join("config.toml"), toml::to_string_pretty(config)?)?;
    let lm = LanguageModel::<B>::load(&config.model.path, device)?.add_lrem_tokens();
    let prompting = Prompting { tokenizer: &lm.tokenizer, system_prompt: config.model.system_prompt.clone() };
    let triples = triples::read(&config.data.run_dir, Split::ColdStart)?;
    let prepared = prepare(&triples, &prompting, config.data.max_query_tokens, config.data.max_item_tokens)?;
    let skipped: String = prepared
        .skipped
        .iter()
        .map(|(q, i, why)| format!("{}\n", serde_json::json!({"query_id": q, "item_id": i, "reason": why})))
        .collect();
    std::fs::write(out.join("skipped.jsonl"), skipped)?;
    let examples = prepared.examples;
    let (epochs, total_steps) = schedule(&examples, config);
    let warmup = optim::warmup_steps(total_steps, config.optim.warmup_ratio);

    let mut model: Decoder<B> = lm.model;
    let mut optim = optim::adamw(&config.optim).init::<B, Decoder<B>>();
    let mut state = TrainState { step: 0, epoch: 0, batch_in_epoch: 0, total_steps, seed: config.data.seed };
    let metrics_path = out.join("metrics.jsonl");
    if options.resume
        && let Some(last) = existing.last()
    {
        let (m, o, s) = checkpoint::load(last, model, optim, device)?;
        if s.total_steps != total_steps || s.seed != config.data.seed {
            bail!(
                "{}: written by a run with another schedule (steps {} vs {}, seed {} vs {})",
                last.display(),
                s.total_steps,
                total_steps,
                s.seed,
                config.data.seed
            );
        }
        (model, optim, state) = (m, o, s);
        metrics::truncate(&metrics_path, state.step)?;
        eprintln!("resuming from {} (step {})", last.display(), state.step);
    } else {
        let _ = std::fs::remove_file(&metrics_path);
    }

    let bar = if options.progress { ProgressBar::new(total_steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("a valid template"),
    );
    bar.set_position(state.step as u64);
    let started = Instant::now();
    let mut last_saved = existing.last().cloned();
    'epochs: while state.step < total_steps && state.epoch < epochs.len() {
        let batches = &epochs[state.epoch];
        while state.batch_in_epoch < batches.len() {
            if state.step >= total_steps || options.stop_after.is_some_and(|s| state.step >= s) {
                break 'epochs;
            }
            let group_end = (state.batch_in_epoch + config.optim.grad_accum).min(batches.len());
            let group = &batches[state.batch_in_epoch..group_end];
            let t0 = Instant::now();
            let mut acc = GradientsAccumulator::<Decoder<B>>::new();
            let mut parts = LossParts::default();
            let mut examples_seen = 0;
            for batch in group {
                let batch: Vec<&Example> = batch.iter().map(|&i| &examples[i]).collect();
                let scale = 1.0 / group.len() as f64;
                let (grads, p) = batch_gradients(&model, &batch, &config.loss, config.optim.chunk_size, scale);
                acc.accumulate(&model, grads);
                parts.infonce += p.infonce * scale;
                parts.ntp += p.ntp * scale;
                parts.total += p.total * scale;
                parts.tokens += p.tokens;
                examples_seen += batch.len();
            }
            let mut grads = acc.grads();
            let grad_norm = optim::clip_global_norm::<B, _>(&model, &mut grads, config.optim.max_grad_norm);
            if !parts.total.is_finite() || !grad_norm.is_finite() {
                bail!(
                    "non-finite loss at step {} (loss {}, InfoNCE {}, NTP {}, gradient norm {}); stopped without updating. Last good checkpoint: {}",
                    state.step + 1,
                    parts.total,
                    parts.infonce,
                    parts.ntp,
                    grad_norm,
                    last_saved.as_ref().map_or("none".into(), |p| p.display().to_string())
                );
            }
            let lr = optim::lr_at(state.step, total_steps, warmup, config.optim.lr);
            model = optim.step(lr, model, grads);
            state.step += 1;
            state.batch_in_epoch = group_end;
            if state.batch_in_epoch == batches.len() {
                state.epoch += 1;
                state.batch_in_epoch = 0;
            }
            let secs = t0.elapsed().as_secs_f64();
            let record = StepRecord {
                step: state.step,
                epoch: state.epoch,
                lr,
                loss: parts.total,
                infonce: parts.infonce,
                ntp: parts.ntp,
                grad_norm,
                tokens_per_s: parts.tokens as f64 / secs,
                examples_per_s: examples_seen as f64 / secs,
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            metrics::append(&metrics_path, &record)?;
            bar.set_position(state.step as u64);
            bar.set_message(format!(
                "loss {:.4} (InfoNCE {:.4}, NTP {:.4}) {:.0} tok/s",
                parts.total, parts.infonce, parts.ntp, record.tokens_per_s
            ));
            let last_step = state.step == total_steps || options.stop_after == Some(state.step);
            if state.step % config.checkpoint.every_steps == 0 || last_step {
                last_saved = Some(checkpoint::save(out, &model, &optim, &state, config.checkpoint.keep)?);
            }
            if state.epoch >= epochs.len() {
                break 'epochs;
            }
        }
    }
    bar.finish_and_clear();
    let records = metrics::read(&metrics_path)?;
    if !records.is_empty() {
        metrics::plot(&records, &out.join("curves.svg"))?;
    }
    if state.step < total_steps {
        return Ok(Outcome { state, records, model_dir: None });
    }
    let model_dir = out.join("model");
    crate::model::export::export_decoder(&model, &lm.config, &lm.tokenizer, &model_dir)?;
    let settings = LremSettings { system_prompt: config.model.system_prompt.clone() };
    std::fs::write(model_dir.join("lrem.json"), serde_json::to_vec_pretty(&settings)?)?;
    Ok(Outcome { state, records, model_dir: Some(model_dir) })
}
