//! The step loop: gradient accumulation over a group of batches, clipping, the optimizer step,
//! a metrics line per step, and checkpoints every `every_steps`, at the last step, at
//! `stop_after`, and when interrupted.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::optim::{GradientsAccumulator, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::data::Example;
use super::metrics::{self, StepRecord};
use super::setup::Setup;
use super::step::{LossParts, Memory, shard_gradients};
use super::{RunOptions, optim, sync};
use crate::bail;
use crate::error::Result;
use crate::model::decoder::Decoder;

pub(super) struct Trained<B: AutodiffBackend> {
    pub model: Decoder<B>,
    pub state: TrainState,
    pub interrupted: bool,
}

pub(super) fn train<B: AutodiffBackend>(
    run: Setup<B>,
    config: &TrainConfig,
    out: &Path,
    options: &RunOptions,
) -> Result<Trained<B>> {
    let Setup { examples, epochs, mut model, mut optim, mut state, mut last_saved, .. } = run;
    let total_steps = state.total_steps;
    let warmup = optim::warmup_steps(total_steps, config.optim.warmup_ratio);
    let metrics_path = out.join("metrics.jsonl");
    let ranks = &*options.group;
    let root = ranks.is_root();
    let bar = if options.progress && root { ProgressBar::new(total_steps as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("a valid template"),
    );
    bar.set_position(state.step as u64);
    let asked = || options.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
    // Ranks stop together: a data-parallel run acts on the interrupt the ranks agreed on with
    // the last step's gradients, so no rank leaves while the others wait on it.
    let mut agreed = false;
    let interrupted = |agreed: bool| if ranks.world() > 1 { agreed } else { asked() };
    let started = Instant::now();
    let memory = Memory { chunk: config.optim.chunk_size, recompute: config.optim.gradient_checkpointing };
    let mut saved_step = last_saved.as_ref().map(|_| state.step);
    'epochs: while state.step < total_steps && state.epoch < epochs.len() {
        let batches = &epochs[state.epoch];
        while state.batch_in_epoch < batches.len() {
            if state.step >= total_steps || options.stop_after.is_some_and(|s| state.step >= s) || interrupted(agreed) {
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
                let (grads, p) = shard_gradients(&model, &batch, &config.loss, memory, scale, ranks)?;
                acc.accumulate(&model, grads);
                parts.infonce += p.infonce * scale;
                parts.ntp += p.ntp * scale;
                parts.tokens += p.tokens;
                examples_seen += batch.len();
            }
            // This rank's NTP share and tokens add up over the ranks; InfoNCE is the whole batch's.
            let mut sums = [parts.ntp as f32, parts.tokens as f32, f32::from(u8::from(asked()))];
            let (mut grads, summed_norm) = sync::all_reduce_gradients(ranks, &model, acc.grads(), &mut sums)?;
            if ranks.world() > 1 {
                (parts.ntp, parts.tokens, agreed) = (sums[0] as f64, sums[1] as usize, sums[2] > 0.0);
            }
            parts.total = config.loss.ntp_weight * parts.ntp + config.loss.infonce_weight * parts.infonce;
            let max_norm = config.optim.max_grad_norm;
            let grad_norm = match summed_norm {
                Some(norm) => {
                    optim::clip_to_norm::<B, _>(&model, &mut grads, norm, max_norm);
                    norm
                }
                None => optim::clip_global_norm::<B, _>(&model, &mut grads, max_norm),
            };
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
            if root {
                metrics::append(&metrics_path, &record)?;
            }
            bar.set_position(state.step as u64);
            bar.set_message(format!(
                "loss {:.4} (InfoNCE {:.4}, NTP {:.4}) {:.0} tok/s",
                parts.total, parts.infonce, parts.ntp, record.tokens_per_s
            ));
            let last_step = state.step == total_steps || options.stop_after == Some(state.step) || interrupted(agreed);
            if root && (state.step % config.checkpoint.every_steps == 0 || last_step) {
                last_saved = Some(checkpoint::save(out, &model, &optim, &state, config.checkpoint.keep)?);
                saved_step = Some(state.step);
            }
            if state.epoch >= epochs.len() {
                break 'epochs;
            }
        }
    }
    bar.finish_and_clear();
    let interrupted = interrupted(agreed) && state.step < total_steps;
    if root && interrupted && saved_step != Some(state.step) {
        // Interrupted between the end of a step and the start of the next.
        checkpoint::save(out, &model, &optim, &state, config.checkpoint.keep)?;
    }
    Ok(Trained { model, state, interrupted })
}
