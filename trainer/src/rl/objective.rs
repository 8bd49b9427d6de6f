//! The clipped GRPO objective over sampled completions, and the KL penalty to a reference.
//!
//! ρ is the ratio of the current policy's probability of a completion to the sampling policy's.
//! Per token, ρ_t = π(o_t)/π_old(o_t). Per sequence (the default, the paper's eq. 14 ratio of
//! whole completions), ρ = exp(mean_t log ρ_t): the geometric mean of the token ratios, as GSPO
//! and TRL's `importance_sampling_level = "sequence"` take it, so the clip range means the same
//! for a 3-token CoT as for a 16-token one (the raw product would clip long CoTs far more often).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::model::layers::host;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Sequence,
    Token,
}

/// How per-token losses become one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregation {
    /// Every sampled token weighs the same (DAPO, TRL's default): a sample's weight grows with
    /// its length, and no per-sample division favours short completions.
    #[default]
    TokenMean,
    /// Each sample's mean over its tokens, then the mean over samples (the original GRPO).
    SequenceMean,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    pub level: Level,
    pub aggregation: Aggregation,
    pub clip_low: f64,
    pub clip_high: f64,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        // PPO's and TRL's ε = 0.2, on both sides.
        Self { level: Level::Sequence, aggregation: Aggregation::TokenMean, clip_low: 0.2, clip_high: 0.2 }
    }
}

pub struct Objective<B: Backend> {
    /// −(clipped surrogate), to minimise, plus β·KL when a reference was given.
    pub loss: Tensor<B, 1>,
    /// Share of the samples (sequence level) or tokens (token level) whose clipped branch was
    /// taken, so that they gave no gradient.
    pub clip_fraction: f64,
    /// Mean per-token KL estimate to the reference, when one was given.
    pub kl: Option<f64>,
}

/// Sampled completions in a batch: sample i has `lens[i]` tokens, laid out from column 0 of
/// `[samples, t]` matrices (the rest is padding).
pub struct Completions<'a> {
    pub lens: &'a [usize],
    /// log π_old of each sampled token, as sampled (row i: `lens[i]` values).
    pub old_logp: &'a [Vec<f32>],
    pub advantages: &'a [f64],
}

/// The objective of `new_logp` (`[samples, t]`, with the graph) against the sampling policy.
/// `reference`: the reference policy's log-probabilities of the same tokens, and β.
pub fn clipped<B: Backend>(
    new_logp: Tensor<B, 2>,
    batch: &Completions<'_>,
    reference: Option<(&[Vec<f32>], f64)>,
    config: &ObjectiveConfig,
) -> Objective<B> {
    let device = new_logp.device();
    let [s, t] = new_logp.dims();
    assert_eq!((batch.lens.len(), batch.old_logp.len(), batch.advantages.len()), (s, s, s));
    let padded = |rows: &[Vec<f32>]| {
        let mut out = vec![0f32; s * t];
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), batch.lens[i], "sample {i}");
            out[i * t..i * t + row.len()].copy_from_slice(row);
        }
        Tensor::<B, 2>::from_data(TensorData::new(out, [s, t]).convert::<B::FloatElem>(), &device)
    };
    let mask_rows: Vec<Vec<f32>> = batch.lens.iter().map(|&n| vec![1.0; n]).collect();
    let mask = padded(&mask_rows);
    let lens: Vec<f32> = batch.lens.iter().map(|&n| n.max(1) as f32).collect();
    let lens = Tensor::<B, 2>::from_data(TensorData::new(lens, [s, 1]).convert::<B::FloatElem>(), &device);
    let tokens = batch.lens.iter().sum::<usize>().max(1) as f64;
    let log_ratio = (new_logp.clone() - padded(batch.old_logp)) * mask.clone();
    let adv_shape = match config.level {
        Level::Sequence => [s, 1],
        Level::Token => [s, t],
    };
    let adv: Vec<f32> = match config.level {
        Level::Sequence => batch.advantages.iter().map(|&a| a as f32).collect(),
        Level::Token => batch.advantages.iter().flat_map(|&a| std::iter::repeat_n(a as f32, t)).collect(),
    };
    let adv = Tensor::<B, 2>::from_data(TensorData::new(adv, adv_shape).convert::<B::FloatElem>(), &device);
    // log ρ: per token [s, t], or per sequence [s, 1].
    let log_weights = match config.level {
        Level::Sequence => log_ratio.sum_dim(1).div(lens.clone()),
        Level::Token => log_ratio,
    };
    let ratio = log_weights.exp();
    let clipped = ratio.clone().clamp(1.0 - config.clip_low, 1.0 + config.clip_high);
    let surrogate = (ratio.clone() * adv.clone()).min_pair(clipped * adv.clone());
    let clip_fraction = {
        let (r, a) = (host(ratio.detach()), host(adv));
        let counted: Vec<usize> = match config.level {
            Level::Sequence => (0..s).filter(|&i| batch.lens[i] > 0).collect(),
            Level::Token => (0..s).flat_map(|i| (0..batch.lens[i]).map(move |j| i * t + j)).collect(),
        };
        let hit = counted
            .iter()
            .filter(|&&k| {
                (a[k] > 0.0 && r[k] as f64 > 1.0 + config.clip_high)
                    || (a[k] < 0.0 && (r[k] as f64) < 1.0 - config.clip_low)
            })
            .count();
        hit as f64 / counted.len().max(1) as f64
    };
    // Per-token loss [s, t]; at sequence level every token of a sample carries its sample's.
    let mut per_token = match config.level {
        Level::Sequence => surrogate.neg().repeat_dim(1, t) * mask.clone(),
        Level::Token => surrogate.neg() * mask.clone(),
    };
    let mut kl = None;
    if let Some((ref_logp, beta)) = reference {
        // k3 = exp(ref − new) − (ref − new) − 1: unbiased, never negative (Schulman's estimator).
        let d = (padded(ref_logp) - new_logp) * mask.clone();
        let k3 = (d.clone().exp() - d - 1.0) * mask.clone();
        kl = Some(host(k3.clone().sum().detach())[0] as f64 / tokens);
        per_token = per_token + k3.mul_scalar(beta);
    }
    let loss = match config.aggregation {
        Aggregation::TokenMean => per_token.sum().div_scalar(tokens),
        Aggregation::SequenceMean => per_token.sum_dim(1).div(lens).sum().div_scalar(s as f64),
    };
    Objective { loss, clip_fraction, kl }
}
