//! `lrem-train rl`: GRPO from a cold-start model over a run's triples. Each step samples G CoTs
//! for each of `batch_size · grad_accum` queries, scores them, makes
//! `rollout.updates_per_rollout` policy updates over them (1, on-policy, by default), logs a
//! JSON line to `metrics.jsonl`, and checkpoints as cold start does; the end exports an HF folder
//! with `lrem.json` that `serve --lrem` and `eval` load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::config::RlConfig;
use super::rewards::Rewards;
use super::rollout::{RolloutParams, sample};
use super::step::{
    RankedItems, RlQuery, Share, UpdateSettings, UpdateStats, advantages_over_step, score_rollouts_among,
    update_gradients,
};
use crate::error::Result;
use crate::format::{EMB, END_THINK, LremSettings, Prompting};
use crate::model::LanguageModel;
use crate::model::decoder::Decoder;
use crate::train::checkpoint::{self, TrainState};
use crate::train::{RunOptions, metrics, optim};
use crate::triples::{self, Split};
use crate::{bail, err};

/// One query of the RL data with every positive item it has.
struct QueryItems {
    query_id: u64,
    query: String,
    prompt: Vec<u32>,
    /// (item id, sequence) of each positive.
    items: Vec<(i64, Vec<u32>)>,
}

#[derive(Debug, Serialize)]
struct RlRecord {
    step: usize,
    epoch: usize,
    lr: f64,
    grad_norm: f64,
    #[serde(flatten)]
    stats: UpdateStats,
    rollout_tokens_per_s: f64,
    update_tokens_per_s: f64,
    elapsed_s: f64,
}

/// One sampled completion as `completions.jsonl` has it.
#[derive(Debug, Serialize)]
struct CompletionRecord {
    step: usize,
    query: String,
    sample: usize,
    completion: String,
    cot_tokens: usize,
    closed: bool,
    well_formed: bool,
    rank: usize,
    ranked_items: usize,
    rewards: BTreeMap<String, f64>,
    reward: f64,
    advantage: f64,
}

pub struct RlOutcome {
    pub state: TrainState,
    pub model_dir: Option<PathBuf>,
    /// The mean total reward of each step.
    pub rewards: Vec<f64>,
    /// Stopped by [`RunOptions::interrupt`]; the last checkpoint holds the last step.
    pub interrupted: bool,
}

/// The queries of each step of each epoch: a seeded shuffle, cut into steps of `per_step`.
fn schedule(queries: usize, per_step: usize, epochs: usize, seed: u64) -> Vec<Vec<Vec<usize>>> {
    (0..epochs)
        .map(|e| {
            let mut order: Vec<usize> = (0..queries).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ (e as u64).wrapping_mul(0x9E37_79B9)));
            order.chunks(per_step).map(<[usize]>::to_vec).collect()
        })
        .collect()
}

pub fn rl<B: AutodiffBackend>(
    config: &RlConfig,
    out: &Path,
    options: &RunOptions,
    device: &B::Device,
) -> Result<RlOutcome> {
    config.validate()?;
    let _products = crate::model::precision::autocast(config.precision.products::<B>(device)?);
    let existing = checkpoint::open_run(out, options.resume, config)?;
    let settings = LremSettings::read(&config.model)?;
    if settings.direct {
        bail!("{}: a direct embedder has no CoT to reinforce", config.model.display());
    }
    let lm = LanguageModel::<B>::load(&config.model, device)?.add_lrem_tokens();
    let token = |s: &str| lm.tokenizer.token_id(s).ok_or_else(|| err!("the tokenizer lacks {s}"));
    let (end_think, emb) = (token(END_THINK)?, token(EMB)?);
    let p = Prompting { tokenizer: &lm.tokenizer, system_prompt: settings.system_prompt.clone() };

    let split = if config.data.split == "rl" { Split::Rl } else { Split::ColdStart };
    let triples = triples::read(&config.data.run_dir, split)?;
    if let Some(needs) = &config.data.needs {
        let held = crate::holdout::read(needs, config.data.holdout_seed)?;
        let source = format!("{} ({})", config.data.run_dir.display(), split.table());
        crate::holdout::check_trainable(&triples, &held, &source)?;
    }
    let mut by_query: BTreeMap<u64, QueryItems> = BTreeMap::new();
    let mut skipped = 0;
    for t in &triples {
        let item = p.item_sequence(&t.title)?;
        if item.len() > config.data.max_item_tokens {
            skipped += 1;
            continue;
        }
        let entry = match by_query.entry(t.query_id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(QueryItems {
                query_id: t.query_id,
                query: t.query.clone(),
                prompt: p.query_prompt(&t.query)?,
                items: Vec::new(),
            }),
        };
        entry.items.push((t.item_id, item));
    }
    let queries: Vec<QueryItems> = by_query.into_values().collect();
    let positives: Vec<Vec<i64>> = queries.iter().map(|q| q.items.iter().map(|(id, _)| *id).collect()).collect();
    // Every distinct item of the split, in id order: what the retrieval reward's ranked items
    // are topped up from.
    let split_items: Vec<(i64, &[u32])> = queries
        .iter()
        .flat_map(|q| q.items.iter().map(|(id, s)| (*id, s.as_slice())))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    if queries.len() < 2 {
        bail!(
            "{}: {} has {} queries with items; RL ranks a query's item among the batch's, so it needs at least 2",
            config.data.run_dir.display(),
            split.table(),
            queries.len()
        );
    }
    tracing::info!("rl: {} queries, {} triples ({skipped} items too long)", queries.len(), triples.len());

    let o = &config.optim;
    let per_step = o.batch_size * o.grad_accum;
    let epochs = schedule(queries.len(), per_step, o.epochs, config.data.seed);
    let mut total_steps: usize = epochs.iter().map(Vec::len).sum();
    if o.max_steps > 0 {
        total_steps = total_steps.min(o.max_steps);
    }
    let warmup = optim::warmup_steps(total_steps, o.warmup_ratio);
    let mut model: Decoder<B> = lm.model;
    let mut adam = optim::adamw(o).init::<B, Decoder<B>>();
    let mut state = TrainState { step: 0, epoch: 0, batch_in_epoch: 0, total_steps, seed: config.data.seed };
    let metrics_path = out.join("metrics.jsonl");
    let completions_path = out.join("completions.jsonl");
    let mut last_saved = existing.last().cloned();
    if options.resume
        && let Some(last) = existing.last()
    {
        let (m, a, s) = checkpoint::load(last, model, adam, device)?;
        if s.total_steps != total_steps || s.seed != config.data.seed {
            bail!("{}: written by a run with another schedule", last.display());
        }
        (model, adam, state) = (m, a, s);
        metrics::truncate(&metrics_path, state.step)?;
        metrics::truncate(&completions_path, state.step)?;
        tracing::info!("resuming from {} (step {})", last.display(), state.step);
    } else {
        let _ = std::fs::remove_file(&metrics_path);
        let _ = std::fs::remove_file(&completions_path);
    }

    let rewards =
        Rewards::lrem(config.rewards.format, config.rewards.length, config.rewards.retrieval, config.rollout.budget);
    let update = UpdateSettings {
        group: config.rollout.group,
        scaling: config.loss.scaling,
        objective: config.loss.objective,
        grpo_weight: config.loss.grpo_weight,
        infonce_weight: config.loss.infonce_weight,
        kl_weight: config.loss.kl_weight,
        temperature: config.loss.temperature,
        sampling_temperature: config.rollout.temperature,
        end_think,
        emb,
        stop_ids: lm.tokenizer.stop_ids(),
        recompute: config.optim.gradient_checkpointing,
    };
    // The KL reference: the starting model, frozen, loaded once.
    let reference = if config.loss.kl_weight > 0.0 {
        Some(LanguageModel::<B>::load(&config.model, device)?.add_lrem_tokens().model.valid())
    } else {
        None
    };
    let started = Instant::now();
    let mut step_rewards = Vec::new();
    let mut first_outside: Option<(bool, bool)> = None;
    let interrupted = || options.interrupt.as_ref().is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst));
    while state.step < total_steps && options.stop_after.is_none_or(|s| state.step < s) && !interrupted() {
        let chosen = &epochs[state.epoch][state.batch_in_epoch];
        // The positive item of each query for this step: seeded by step, so a resumed run draws
        // the same ones.
        let mut rng = ChaCha8Rng::seed_from_u64(config.data.seed ^ ((state.step as u64 + 1) << 20));
        let batch: Vec<RlQuery> = chosen
            .iter()
            .map(|&i| {
                let q = &queries[i];
                let (item_id, item) = q.items.choose(&mut rng).expect("a query has an item").clone();
                RlQuery {
                    query: q.query.clone(),
                    prompt: q.prompt.clone(),
                    item,
                    item_id,
                    positives: positives[i].clone(),
                    query_id: q.query_id,
                }
            })
            .collect();
        let t0 = Instant::now();
        let stream = config.data.seed ^ ((state.step as u64 + 1) << 20) ^ 0x0A11_17E5;
        let ranked = ranked_items(&model.valid(), &batch, &split_items, config.rewards.ranked_items, stream);
        let ranking_s = t0.elapsed().as_secs_f64();
        // Sample and score every micro-batch first: each of the μ updates goes over all of them.
        let mut scored = Vec::new();
        let micro: Vec<&[RlQuery]> = batch.chunks(o.batch_size).collect();
        let (mut rollout_s, mut update_s) = (0.0, ranking_s);
        for (m, queries) in micro.iter().enumerate() {
            let t0 = Instant::now();
            let micro_batch_stream = ((state.step as u64) << 16) | m as u64;
            let params = RolloutParams {
                group: config.rollout.group,
                temperature: config.rollout.temperature,
                top_k: config.rollout.top_k,
                top_p: config.rollout.top_p,
                budget: config.rollout.budget,
                // Spread by an odd constant: `seed ^ m` then `+ sample` reused streams across
                // micro-batches (micro-batch 1's sample 0 was micro-batch 0's sample 1).
                seed: config.data.seed.wrapping_add(micro_batch_stream.wrapping_mul(0xD1B5_4A32_D192_ED03)),
            };
            let prompts: Vec<Vec<u32>> = queries.iter().map(|q| q.prompt.clone()).collect();
            let rollouts = sample(&model.valid(), &lm.tokenizer, &prompts, &params, end_think, emb)?;
            rollout_s += t0.elapsed().as_secs_f64();
            // Scoring (rewards, advantages) counts with the update, as before several updates.
            let t1 = Instant::now();
            let batch =
                score_rollouts_among(&model, reference.as_ref(), &rewards, queries, &rollouts, &ranked, &update);
            update_s += t1.elapsed().as_secs_f64();
            scored.push((rollouts, batch));
        }
        advantages_over_step(scored.iter_mut().map(|(_, b)| b), update.group, update.scaling);
        let completions =
            completion_lines(&scored, &micro, &rewards, config.log.completions, state.step + 1, &lm.tokenizer)?;
        let last_good = || last_saved.as_ref().map_or("none".into(), |p: &PathBuf| p.display().to_string());
        // The guard watches for a collapse during the run: a policy that starts outside a bound
        // (a cold start that never closes its CoT in the budget) is reported once, not stopped.
        let outside = |s: &UpdateStats| {
            (s.format_failure_rate > config.guard.max_format_failure, s.entropy < config.guard.min_entropy)
        };
        let t1 = Instant::now();
        let lr = optim::lr_at(state.step, total_steps, warmup, o.lr);
        let mut updates = Vec::new();
        let mut grad_norm = 0.0;
        let shares = Share::of(&scored.iter().map(|(r, _)| r.as_slice()).collect::<Vec<_>>());
        for u in 0..config.rollout.updates_per_rollout {
            let mut acc = GradientsAccumulator::<Decoder<B>>::new();
            let mut parts = Vec::new();
            for (((rollouts, batch), queries), &share) in scored.iter_mut().zip(&micro).zip(&shares) {
                let (grads, s) = update_gradients(&model, batch, queries, rollouts, &update, share);
                acc.accumulate(&model, grads);
                parts.push(s);
            }
            let mut grads = acc.grads();
            grad_norm = optim::clip_global_norm::<B, _>(&model, &mut grads, o.max_grad_norm);
            let stats = merge(&parts);
            if !grad_norm.is_finite() || !stats.objective.is_finite() {
                bail!(
                    "non-finite loss at step {} (update {} of its rollouts); stopped without updating. Last good checkpoint: {}",
                    state.step + 1,
                    u + 1,
                    last_good()
                );
            }
            if u == 0 {
                // The entropy estimate comes with the first update (π_old's log-probabilities).
                let started_outside = *first_outside.get_or_insert_with(|| {
                    let (format, entropy) = outside(&stats);
                    if format || entropy {
                        tracing::warn!(
                            "the starting policy is already outside the collapse guard (format failures {:.2}, entropy {:.3}): \
                             the guard watches only the bound it starts inside",
                            stats.format_failure_rate,
                            stats.entropy
                        );
                    }
                    (format, entropy)
                });
                let (format, entropy) = outside(&stats);
                if (format && !started_outside.0) || (entropy && !started_outside.1) {
                    bail!(
                        "the policy collapsed at step {}: format failures {:.2} (bound {}), entropy {:.3} (bound {}). Last good checkpoint: {}",
                        state.step + 1,
                        stats.format_failure_rate,
                        config.guard.max_format_failure,
                        stats.entropy,
                        config.guard.min_entropy,
                        last_good()
                    );
                }
            }
            model = adam.step(lr, model, grads);
            updates.push(stats);
        }
        update_s += t1.elapsed().as_secs_f64();
        // The rollout's measures, the first update's entropy and losses, and the clip fraction
        // and KL over every update (the first, on-policy, never clips).
        let mut stats = updates[0].clone();
        let n = updates.len() as f64;
        stats.clip_fraction = updates.iter().map(|s| s.clip_fraction).sum::<f64>() / n;
        stats.kl = updates[0].kl.map(|_| updates.iter().filter_map(|s| s.kl).sum::<f64>() / n);
        state.step += 1;
        state.batch_in_epoch += 1;
        if state.batch_in_epoch == epochs[state.epoch].len() {
            state.epoch += 1;
            state.batch_in_epoch = 0;
        }
        step_rewards.push(stats.reward_mean);
        let tokens = stats.sampled_tokens as f64;
        let record = RlRecord {
            step: state.step,
            epoch: state.epoch,
            lr,
            grad_norm,
            rollout_tokens_per_s: tokens / rollout_s.max(1e-9),
            update_tokens_per_s: tokens * updates.len() as f64 / update_s.max(1e-9),
            elapsed_s: started.elapsed().as_secs_f64(),
            stats,
        };
        metrics::append(&metrics_path, &record)?;
        metrics::append_all(&completions_path, &completions)?;
        tracing::info!(
            "rl step {}/{}: reward {:.3} (format failures {:.2}, CoT {:.1} tokens, clip {:.2})",
            state.step,
            total_steps,
            record.stats.reward_mean,
            record.stats.format_failure_rate,
            record.stats.cot_tokens_mean,
            record.stats.clip_fraction
        );
        let last = state.step == total_steps || options.stop_after == Some(state.step) || interrupted();
        if state.step % config.checkpoint.every_steps == 0 || last {
            last_saved = Some(checkpoint::save(out, &model, &adam, &state, config.checkpoint.keep)?);
        }
        if state.epoch >= epochs.len() {
            break;
        }
    }
    if metrics_path.exists() {
        super::curves::plot(&metrics_path, &out.join("curves.svg"))?;
    }
    if state.step < total_steps {
        return Ok(RlOutcome { state, model_dir: None, rewards: step_rewards, interrupted: interrupted() });
    }
    let model_dir = out.join("model");
    crate::model::export::export_decoder(&model, &lm.config, &lm.tokenizer, &model_dir)?;
    std::fs::write(model_dir.join("lrem.json"), serde_json::to_vec_pretty(&settings)?)?;
    Ok(RlOutcome { state, model_dir: Some(model_dir), rewards: step_rewards, interrupted: false })
}

/// The samples of the step's first `queries` queries, for `completions.jsonl`.
fn completion_lines(
    scored: &[(Vec<super::rollout::Rollout>, super::step::ScoredBatch)],
    micro: &[&[RlQuery]],
    rewards: &Rewards,
    queries: usize,
    step: usize,
    tokenizer: &crate::model::tokenizer::TextTokenizer,
) -> Result<Vec<CompletionRecord>> {
    let mut lines = Vec::new();
    let mut left = queries;
    for ((rollouts, batch), qs) in scored.iter().zip(micro) {
        for (i, r) in rollouts.iter().enumerate() {
            if r.query >= left {
                break;
            }
            lines.push(CompletionRecord {
                step,
                query: qs[r.query].query.clone(),
                sample: r.sample,
                completion: tokenizer.decode(&r.ids, false)?,
                cot_tokens: r.cot_tokens,
                closed: r.closed,
                well_formed: r.well_formed,
                rank: batch.ranks()[i],
                ranked_items: batch.stats.ranked_items,
                rewards: rewards
                    .funcs
                    .iter()
                    .zip(batch.parts())
                    .map(|((f, _), p)| (f.name().to_string(), p[i]))
                    .collect(),
                reward: batch.totals()[i],
                advantage: batch.advantages()[i],
            });
        }
        left = left.saturating_sub(qs.len());
        if left == 0 {
            break;
        }
    }
    Ok(lines)
}

/// The step's items for the retrieval reward: its drawn positives, then positives of other
/// queries of the split up to `wanted`, drawn from the step's own `stream` (so a resumed run
/// draws the same, and the positives' draw is the same with or without them).
fn ranked_items<B: burn::tensor::backend::Backend>(
    model: &Decoder<B>,
    batch: &[RlQuery],
    split_items: &[(i64, &[u32])],
    wanted: usize,
    stream: u64,
) -> RankedItems {
    let mut items: Vec<(i64, &[u32])> = batch.iter().map(|q| (q.item_id, q.item.as_slice())).collect();
    let drawn: std::collections::HashSet<i64> = items.iter().map(|(id, _)| *id).collect();
    if wanted > drawn.len() {
        let others: Vec<&(i64, &[u32])> = split_items.iter().filter(|(id, _)| !drawn.contains(id)).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(stream);
        items.extend(others.choose_multiple(&mut rng, wanted - drawn.len()).map(|x| **x));
    }
    RankedItems::embed(model, &items)
}

/// The stats of a step's micro-batches: means weighted by their groups.
fn merge(parts: &[UpdateStats]) -> UpdateStats {
    let groups: usize = parts.iter().map(|s| s.groups).sum();
    let w = |s: &UpdateStats| s.groups as f64 / groups.max(1) as f64;
    let mean = |f: fn(&UpdateStats) -> f64| parts.iter().map(|s| w(s) * f(s)).sum::<f64>();
    let mut rewards = parts[0].rewards.clone();
    for (k, r) in rewards.iter_mut().enumerate() {
        r.1 = parts.iter().map(|s| w(s) * s.rewards[k].1).sum();
        r.2 = parts.iter().map(|s| w(s) * s.rewards[k].2).sum();
    }
    UpdateStats {
        rewards,
        reward_mean: mean(|s| s.reward_mean),
        reward_std: mean(|s| s.reward_std),
        zero_advantage_groups: parts.iter().map(|s| s.zero_advantage_groups).sum(),
        groups,
        cot_tokens_mean: mean(|s| s.cot_tokens_mean),
        format_failure_rate: mean(|s| s.format_failure_rate),
        entropy: mean(|s| s.entropy),
        clip_fraction: mean(|s| s.clip_fraction),
        kl: parts[0].kl.map(|_| mean(|s| s.kl.unwrap_or(0.0))),
        infonce: mean(|s| s.infonce),
        objective: mean(|s| s.objective),
        sampled_tokens: parts.iter().map(|s| s.sampled_tokens).sum(),
        ranked_items: parts[0].ranked_items,
    }
}
