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

#[cfg(test)]
mod tests {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, TensorData};

    use super::*;
    use crate::backend::{Cpu, CpuAutodiff};

    type A = CpuAutodiff;

    /// A toy policy: free logits `[samples, t, vocab]`; sample i chose `ids[i][j]` at step j.
    struct Toy {
        logits: Tensor<A, 3>,
        ids: Vec<Vec<i64>>,
    }

    impl Toy {
        fn new(samples: usize, t: usize, vocab: usize, ids: Vec<Vec<i64>>) -> Self {
            let values: Vec<f32> = (0..samples * t * vocab).map(|k| ((k * 37 % 11) as f32 - 5.0) / 4.0).collect();
            let logits = Tensor::<A, 3>::from_data(TensorData::new(values, [samples, t, vocab]), &Default::default());
            Self { logits: logits.require_grad(), ids }
        }

        fn logp(&self) -> Tensor<A, 2> {
            let [s, t, _] = self.logits.dims();
            let padded: Vec<i64> =
                self.ids.iter().flat_map(|row| (0..t).map(|j| row.get(j).copied().unwrap_or(0))).collect();
            let ids = Tensor::<A, 3, Int>::from_data(TensorData::new(padded, [s, t, 1]), &Default::default());
            log_softmax(self.logits.clone(), 2).gather(2, ids).reshape([s, t])
        }

        fn rows(&self, shift: f32) -> Vec<Vec<f32>> {
            let t = self.logits.dims()[1];
            let all = host(self.logp().detach());
            self.ids
                .iter()
                .enumerate()
                .map(|(i, row)| (0..row.len()).map(|j| all[i * t + j] + shift).collect())
                .collect()
        }

        fn grad(&self, loss: Tensor<A, 1>) -> Vec<f32> {
            let grads = loss.backward();
            let g: Tensor<Cpu, 3> = self.logits.grad(&grads).expect("the logits take part in the loss");
            host(g)
        }
    }

    fn toy() -> Toy {
        Toy::new(3, 4, 5, vec![vec![1, 2, 3, 4], vec![0, 2], vec![4, 4, 1]])
    }

    #[test]
    fn on_policy_the_gradient_is_the_plain_policy_gradient() {
        let advantages = [1.0, -0.5, 0.25];
        for level in [Level::Sequence, Level::Token] {
            let policy = toy();
            let old = policy.rows(0.0);
            let lens: Vec<usize> = policy.ids.iter().map(Vec::len).collect();
            let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
            let config = ObjectiveConfig { level, ..Default::default() };
            let out = clipped(policy.logp(), &batch, None, &config);
            assert_eq!(out.clip_fraction, 0.0);
            let got = policy.grad(out.loss);
            // −Σ A_i log π(o_i,t) over the tokens, divided by the token count (token mean).
            let t = 4;
            let weights: Vec<f32> = (0..3)
                .flat_map(|i| {
                    let (n, a) = (lens[i], advantages[i] as f32);
                    (0..t).map(move |j| if j < n { -a / 9.0 } else { 0.0 })
                })
                .collect();
            let weights = Tensor::<A, 2>::from_data(TensorData::new(weights, [3, t]), &Default::default());
            let want = policy.grad((policy.logp() * weights).sum());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{level:?}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn a_positive_advantage_raises_the_sample_and_clipping_stops_it() {
        let t = 4;
        let chosen = |g: &[f32], i: usize, j: usize, id: usize| g[(i * t + j) * 5 + id];
        // ρ = e^0.5 ≈ 1.65 on every token: above 1 + ε.
        let policy = toy();
        let old = policy.rows(-0.5);
        let lens: Vec<usize> = policy.ids.iter().map(Vec::len).collect();
        let advantages = [1.0, -1.0, 0.0];
        let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
        let out = clipped(policy.logp(), &batch, None, &ObjectiveConfig::default());
        // Sample 0 (A > 0, ρ above the range) is clipped: no gradient; sample 1 (A < 0) is not.
        assert!((out.clip_fraction - 1.0 / 3.0).abs() < 1e-9, "{}", out.clip_fraction);
        let g = policy.grad(out.loss);
        assert!(g[..t * 5].iter().all(|v| *v == 0.0), "{:?}", &g[..t * 5]);
        // Descent on sample 1 lowers its chosen tokens' logits: a positive gradient.
        assert!(chosen(&g, 1, 0, 0) > 0.0 && chosen(&g, 1, 1, 2) > 0.0);

        // Inside the range (ρ = 1), A > 0: descent raises the chosen logits.
        let policy = toy();
        let old = policy.rows(0.0);
        let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
        let g = policy.grad(clipped(policy.logp(), &batch, None, &ObjectiveConfig::default()).loss);
        assert!(chosen(&g, 0, 0, 1) < 0.0 && chosen(&g, 0, 3, 4) < 0.0);
    }

    #[test]
    fn kl_to_an_identical_reference_is_zero_and_grows_with_the_gap() {
        let policy = toy();
        let old = policy.rows(0.0);
        let lens: Vec<usize> = policy.ids.iter().map(Vec::len).collect();
        let advantages = [0.0; 3];
        let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
        let config = ObjectiveConfig::default();
        let same = clipped(policy.logp(), &batch, Some((&old, 0.1)), &config);
        assert!(same.kl.unwrap().abs() < 1e-6);
        let far = policy.rows(-1.0);
        let apart = clipped(policy.logp(), &batch, Some((&far, 0.1)), &config);
        // k3 at d = −1: e^−1 + 1 − 1.
        assert!((apart.kl.unwrap() - (-1f64).exp()).abs() < 1e-5, "{:?}", apart.kl);
        assert!((host(apart.loss)[0] as f64 - 0.1 * (-1f64).exp()).abs() < 1e-5);
    }
}
