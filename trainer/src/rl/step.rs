//! GRPO updates: a rollout batch is scored once (rewards of the sampled CoTs, embedded without a
//! graph and ranked among the step's [`RankedItems`]; group advantages; the reference's
//! log-probabilities when KL is on), then each policy update back-propagates
//! γ1·(clipped objective) + γ2·InfoNCE of the B·G sampled queries' embeddings against the B items
//! in one graph.

use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use super::advantage::{Advantages, Scaling, advantages};
use super::objective::{Aggregation, Completions, ObjectiveConfig, clipped};
use super::rewards::{Rewards, Sample, rank_of_positive};
use super::rollout::{Predicted, Rollout, logprobs_at, sampled_logprobs};
use crate::format::{last_position, pool_last};
use crate::model::decoder::Decoder;
use crate::model::layers::host;
use crate::train::loss::info_nce_items_where;
use crate::train::recompute::{chunk_gradients, embed_graph_free};

/// One query of a batch: its prompt (ending in `<think>`), the positive item drawn for this step
/// (its sequence `prompt<emb>` and id), and the ids of every positive it has in the split: a
/// ranked item is a positive of the query when its id is among them.
#[derive(Debug, Clone)]
pub struct RlQuery {
    pub query: String,
    pub prompt: Vec<u32>,
    pub item: Vec<u32>,
    pub item_id: i64,
    pub positives: Vec<i64>,
    pub query_id: u64,
}

/// The items every sample of a step is ranked among for the retrieval reward, embedded once per
/// step without a graph: the step's drawn positives (every micro-batch's, once per id) and, to
/// reach `rewards.ranked_items`, positives of other queries of the split. The paper ranks among
/// the items of a 256-query batch; at B = 4 the batch alone leaves the reward saturated.
pub struct RankedItems {
    ids: Vec<i64>,
    vectors: Vec<Vec<f32>>,
}

impl RankedItems {
    /// `items` as (id, sequence); a repeated id is embedded once.
    pub fn embed<B: Backend>(model: &Decoder<B>, items: &[(i64, &[u32])]) -> Self {
        let mut seen = std::collections::HashSet::new();
        let (ids, seqs): (Vec<i64>, Vec<Vec<u32>>) =
            items.iter().filter(|(id, _)| seen.insert(*id)).map(|(id, s)| (*id, s.to_vec())).unzip();
        let vectors = pool_last(model, &seqs, 64);
        Self { ids, vectors }
    }

    /// The queries' drawn items only: the in-batch ranking.
    pub fn of<B: Backend>(model: &Decoder<B>, queries: &[RlQuery]) -> Self {
        let items: Vec<(i64, &[u32])> = queries.iter().map(|q| (q.item_id, q.item.as_slice())).collect();
        Self::embed(model, &items)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rank of `query`'s best positive for the embedding `q` (see [`rank_of_positive`]).
    fn rank(&self, q: &[f32], query: &RlQuery) -> usize {
        let scores: Vec<f32> = self.vectors.iter().map(|i| i.iter().zip(q).map(|(a, b)| a * b).sum()).collect();
        let positive: Vec<bool> = self.ids.iter().map(|id| query.positives.contains(id)).collect();
        rank_of_positive(&scores, &positive)
    }
}

#[derive(Debug, Clone)]
pub struct UpdateSettings {
    pub group: usize,
    pub scaling: Scaling,
    pub objective: ObjectiveConfig,
    /// γ1 and γ2.
    pub grpo_weight: f64,
    pub infonce_weight: f64,
    /// β of the KL penalty to the reference model (used only when one was scored).
    pub kl_weight: f64,
    /// τ of InfoNCE.
    pub temperature: f64,
    /// The sampling temperature, at which the policy's log-probabilities are taken.
    pub sampling_temperature: f32,
    pub end_think: u32,
    pub emb: u32,
    pub stop_ids: Vec<u32>,
    /// Gradient checkpointing per decoder layer (`train::recompute`): the update's graph one
    /// block at a time, for one extra forward pass.
    pub recompute: bool,
}

impl UpdateSettings {
    /// The paper's loss settings (γ = (1, 0.1), no KL, τ 0.05) with TRL's group scaling and
    /// clipping, sampling at temperature 1.
    pub fn new(group: usize, end_think: u32, emb: u32, stop_ids: Vec<u32>) -> Self {
        Self {
            group,
            scaling: Scaling::Group,
            objective: ObjectiveConfig::default(),
            grpo_weight: 1.0,
            infonce_weight: 0.1,
            kl_weight: 0.0,
            temperature: 0.05,
            sampling_temperature: 1.0,
            end_think,
            emb,
            stop_ids,
            recompute: false,
        }
    }
}

/// What RL users read first, per step.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UpdateStats {
    /// Per reward function: (name, mean, std).
    pub rewards: Vec<(String, f64, f64)>,
    pub reward_mean: f64,
    pub reward_std: f64,
    pub zero_advantage_groups: usize,
    pub groups: usize,
    pub cot_tokens_mean: f64,
    pub format_failure_rate: f64,
    /// −mean log π of the sampled tokens: a Monte-Carlo estimate of the policy's entropy.
    pub entropy: f64,
    pub clip_fraction: f64,
    /// Mean per-token KL to the reference model, when β_KL > 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    pub infonce: f64,
    pub objective: f64,
    pub sampled_tokens: usize,
    /// Items the retrieval reward ranked each sample among.
    pub ranked_items: usize,
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    (mean, (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt())
}

/// A rollout batch after scoring: what every policy update over it reuses. The sampling
/// policy's log-probabilities are taken at the first update (before any step, so ρ ≡ 1 there) and
/// kept for the later ones.
pub struct ScoredBatch {
    /// `prompt CoT</think><emb>` of each sample: its embedding sequence.
    seqs: Vec<Vec<u32>>,
    items: Vec<Vec<u32>>,
    /// Per reward function, one score per sample; their weighted sum; each sample's rank.
    parts: Vec<Vec<f64>>,
    totals: Vec<f64>,
    ranks: Vec<usize>,
    advantages: Vec<f64>,
    old_logp: Option<Vec<Vec<f32>>>,
    /// The reference policy's log-probabilities of the sampled tokens, when KL is on.
    reference: Option<Vec<Vec<f32>>>,
    /// The rollout-side measures (rewards, lengths, format, entropy); each update adds its own.
    pub stats: UpdateStats,
}

impl ScoredBatch {
    /// The weighted reward of each sample.
    pub fn totals(&self) -> &[f64] {
        &self.totals
    }

    pub fn advantages(&self) -> &[f64] {
        &self.advantages
    }

    /// Per reward function (in the `Rewards`' order), one score per sample.
    pub fn parts(&self) -> &[Vec<f64>] {
        &self.parts
    }

    /// The rank of each sample's positive among the ranked items.
    pub fn ranks(&self) -> &[usize] {
        &self.ranks
    }
}

/// Rewards of the sampled CoTs (embedded without a graph, each ranked among its batch's drawn
/// items) and their group advantages; with a `reference` model (KL on), its log-probabilities
/// of the sampled tokens too.
pub fn score_rollouts<B: AutodiffBackend>(
    model: &Decoder<B>,
    reference: Option<&Decoder<B::InnerBackend>>,
    rewards: &Rewards,
    queries: &[RlQuery],
    rollouts: &[Rollout],
    s: &UpdateSettings,
) -> ScoredBatch {
    let ranked = RankedItems::of(&model.valid(), queries);
    score_rollouts_among(model, reference, rewards, queries, rollouts, &ranked, s)
}

/// [`score_rollouts`] with each sample ranked among `ranked` (which must hold a positive of
/// every query).
pub fn score_rollouts_among<B: AutodiffBackend>(
    model: &Decoder<B>,
    reference: Option<&Decoder<B::InnerBackend>>,
    rewards: &Rewards,
    queries: &[RlQuery],
    rollouts: &[Rollout],
    ranked: &RankedItems,
    s: &UpdateSettings,
) -> ScoredBatch {
    assert_eq!(rollouts.len(), queries.len() * s.group, "G samples per query");
    let seqs: Vec<Vec<u32>> = rollouts
        .iter()
        .map(|r| r.embedding_sequence(&queries[r.query].prompt, s.end_think, s.emb, &s.stop_ids))
        .collect();
    let items: Vec<Vec<u32>> = queries.iter().map(|q| q.item.clone()).collect();
    let qv = pool_last(&model.valid(), &seqs, 64);
    let ranks: Vec<usize> = rollouts.iter().zip(&qv).map(|(r, q)| ranked.rank(q, &queries[r.query])).collect();
    let samples: Vec<Sample<'_>> = rollouts
        .iter()
        .zip(&ranks)
        .map(|(r, &rank)| Sample {
            query: &queries[r.query].query,
            ids: &r.ids,
            cot_tokens: r.cot_tokens,
            closed: r.closed,
            well_formed: r.well_formed,
            rank,
            items: ranked.len(),
        })
        .collect();
    let scored = rewards.score(&samples);
    let adv = advantages(&scored.total, s.group, s.scaling);
    let reference =
        reference.map(|m| rows_of(&sampled_logprobs(m, &pairs(queries, rollouts), s.sampling_temperature), rollouts));

    let mut stats = UpdateStats {
        groups: queries.len(),
        zero_advantage_groups: adv.zero_groups,
        sampled_tokens: rollouts.iter().map(|r| r.ids.len()).sum(),
        ranked_items: ranked.len(),
        ..Default::default()
    };
    (stats.reward_mean, stats.reward_std) = mean_std(&scored.total);
    for ((f, _), part) in rewards.funcs.iter().zip(&scored.parts) {
        let (m, sd) = mean_std(part);
        stats.rewards.push((f.name().to_string(), m, sd));
    }
    let n = rollouts.len().max(1) as f64;
    stats.cot_tokens_mean = rollouts.iter().map(|r| r.cot_tokens as f64).sum::<f64>() / n;
    stats.format_failure_rate = rollouts.iter().filter(|r| !r.well_formed).count() as f64 / n;
    ScoredBatch {
        seqs,
        items,
        parts: scored.parts,
        totals: scored.total,
        ranks,
        advantages: adv.values,
        old_logp: None,
        reference,
        stats,
    }
}

/// The advantages of a step scored in micro-batches, as if scored whole: only `Scaling::Batch`
/// differs (its deviation is the step's); the group scalings are per query already.
pub fn advantages_over_step<'a>(
    batches: impl IntoIterator<Item = &'a mut ScoredBatch>,
    group: usize,
    scaling: Scaling,
) {
    let mut batches: Vec<&mut ScoredBatch> = batches.into_iter().collect();
    let totals: Vec<f64> = batches.iter().flat_map(|b| b.totals.iter().copied()).collect();
    let Advantages { values, .. } = advantages(&totals, group, scaling);
    let mut rest = values.as_slice();
    for b in &mut batches {
        let (mine, tail) = rest.split_at(b.totals.len());
        b.advantages = mine.to_vec();
        rest = tail;
    }
}

fn pairs<'a>(queries: &'a [RlQuery], rollouts: &'a [Rollout]) -> Vec<(&'a [u32], &'a [u32])> {
    rollouts.iter().map(|r| (queries[r.query].prompt.as_slice(), r.ids.as_slice())).collect()
}

/// The rows of a `[samples, t]` log-probability matrix, each cut to its sample's length.
fn rows_of<B: burn::tensor::backend::Backend>(logp: &Tensor<B, 2>, rollouts: &[Rollout]) -> Vec<Vec<f32>> {
    let width = logp.dims()[1];
    let flat = host(logp.clone());
    rollouts.iter().enumerate().map(|(i, r)| flat[i * width..i * width + r.ids.len()].to_vec()).collect()
}

/// What one micro-batch is of the whole step's batch, for accumulating its gradients: its
/// share of the sampled tokens and of the samples. A token-mean objective is then a mean over
/// every token of the step (as TRL's `dapo` loss), not a mean of the micro-batches' means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub tokens: f64,
    pub samples: f64,
}

impl Share {
    pub const WHOLE: Share = Share { tokens: 1.0, samples: 1.0 };

    /// Each micro-batch's share, from its rollouts.
    pub fn of(micro_batches: &[&[Rollout]]) -> Vec<Share> {
        let tokens = |r: &[Rollout]| r.iter().map(|x| x.ids.len()).sum::<usize>();
        let all_tokens = micro_batches.iter().map(|r| tokens(r)).sum::<usize>().max(1) as f64;
        let all_samples = micro_batches.iter().map(|r| r.len()).sum::<usize>().max(1) as f64;
        micro_batches
            .iter()
            .map(|r| Share { tokens: tokens(r) as f64 / all_tokens, samples: r.len() as f64 / all_samples })
            .collect()
    }
}

/// The gradients of one policy update over a scored batch, weighted by its `share` of the step
/// (for accumulation): γ1·(clipped objective, + β·KL when a reference was scored) + γ2·InfoNCE
/// of every sample's embedding against its query's item (the batch's other items its negatives).
pub fn update_gradients<B: AutodiffBackend>(
    model: &Decoder<B>,
    batch: &mut ScoredBatch,
    queries: &[RlQuery],
    rollouts: &[Rollout],
    s: &UpdateSettings,
    share: Share,
) -> (GradientsParams, UpdateStats) {
    // One forward pass with the graph gives both the sampled tokens' log-probabilities and the
    // embeddings: a sample whose `prompt + sampled ids` starts its embedding sequence (closed by
    // the model, or cut at the budget) is read from that one row; the others (ended by an
    // end-of-turn token) get a second row for their embedding. The items ride along.
    let n = rollouts.len();
    let joint: Vec<Vec<u32>> = rollouts.iter().map(|r| [queries[r.query].prompt.as_slice(), &r.ids].concat()).collect();
    let mut rows: Vec<&[u32]> = Vec::with_capacity(n + queries.len());
    let mut emb_row = vec![0usize; n];
    for i in 0..n {
        if batch.seqs[i].starts_with(&joint[i]) {
            rows.push(&batch.seqs[i]);
            emb_row[i] = i;
        } else {
            rows.push(&joint[i]);
        }
    }
    for i in 0..n {
        if !batch.seqs[i].starts_with(&joint[i]) {
            emb_row[i] = rows.len();
            rows.push(&batch.seqs[i]);
        }
    }
    let first_item = rows.len();
    rows.extend(batch.items.iter().map(Vec::as_slice));
    let saved = s.recompute.then(|| embed_graph_free(&model.valid(), &rows, true).1.expect("outputs kept"));
    let mut stats = batch.stats.clone();
    let grads = chunk_gradients(model, &rows, saved, |hidden| {
        let t = hidden.dims()[1];
        let predicted: Vec<Predicted<'_>> = rollouts
            .iter()
            .enumerate()
            .map(|(i, r)| Predicted {
                row: i,
                first: t - rows[i].len() + queries[r.query].prompt.len() - 1,
                ids: &r.ids,
            })
            .collect();
        let logp = logprobs_at(model, hidden.clone(), &predicted, s.sampling_temperature);
        // The first update is on-policy: π_old is the current policy without its graph.
        let old = batch.old_logp.get_or_insert_with(|| rows_of(&logp.clone().detach(), rollouts));
        let lens: Vec<usize> = rollouts.iter().map(|r| r.ids.len()).collect();
        let completions = Completions { lens: &lens, old_logp: old, advantages: &batch.advantages };
        let reference = batch.reference.as_deref().map(|r| (r, s.kl_weight));
        let objective = clipped(logp, &completions, reference, &s.objective);

        let last = last_position(hidden);
        let device = last.device();
        let index = |v: Vec<i64>| {
            let len = v.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(v, [len]), &device)
        };
        let q = last.clone().select(0, index(emb_row.iter().map(|&r| r as i64).collect()));
        // The B items once each; a sample's positive is its own query's item.
        let d = last.slice([first_item..first_item + queries.len()]);
        let positive: Vec<usize> = rollouts.iter().map(|r| r.query).collect();
        // Another query's item that is one of this query's positives (phrasings of a need share
        // items) is masked, as the retrieval reward's ranking does, not counted a negative.
        let also_positive = |i: usize, j: usize| {
            let own = &queries[rollouts[i].query];
            own.query_id == queries[j].query_id || own.positives.contains(&queries[j].item_id)
        };
        let nce = info_nce_items_where(q, d, &positive, also_positive, s.temperature);

        stats.clip_fraction = objective.clip_fraction;
        stats.kl = objective.kl;
        // −mean log π_old of the sampled tokens: a Monte-Carlo estimate of the policy's entropy.
        stats.entropy = -old.iter().flatten().map(|&l| l as f64).sum::<f64>() / stats.sampled_tokens.max(1) as f64;
        stats.infonce = nce.clone().into_scalar().elem::<f64>();
        stats.objective = objective.loss.clone().into_scalar().elem::<f64>();
        let objective_share = match s.objective.aggregation {
            Aggregation::TokenMean => share.tokens,
            Aggregation::SequenceMean => share.samples,
        };
        objective.loss.mul_scalar(s.grpo_weight * objective_share) + nce.mul_scalar(s.infonce_weight * share.samples)
    });
    (grads, stats)
}

/// One on-policy update's gradients over `rollouts` (G consecutive samples per query, in query
/// order), with no reference: scoring and the first update together.
pub fn grpo_gradients<B: AutodiffBackend>(
    model: &Decoder<B>,
    rewards: &Rewards,
    queries: &[RlQuery],
    rollouts: &[Rollout],
    s: &UpdateSettings,
    share: Share,
) -> (GradientsParams, UpdateStats) {
    let mut batch = score_rollouts(model, None, rewards, queries, rollouts, s);
    update_gradients(model, &mut batch, queries, rollouts, s, share)
}
