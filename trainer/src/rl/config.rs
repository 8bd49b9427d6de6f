//! The RL configuration (TOML). Defaults are the paper's where it gives one (lr 1e-6, cosine
//! with 3% warmup, one epoch, 256 queries a step, G = 8, β = (0.5, 0.2, 1), γ = (1, 0.1), no KL)
//! and TRL's otherwise; every key is optional and an unknown key is an error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::advantage::Scaling;
use super::objective::ObjectiveConfig;
use crate::bail;
use crate::error::{Context, Result};
use crate::model::precision::Precision;
use crate::train::config::{CheckpointConfig, OptimConfig, read_toml};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlConfig {
    /// The cold-start model folder (an export with `lrem.json`); `--from` overrides it.
    pub model: PathBuf,
    pub data: RlData,
    pub rollout: RolloutConfig,
    pub rewards: RewardWeights,
    pub loss: RlLoss,
    /// `batch_size` counts queries (each sampled G times); `chunk_size` is unused;
    /// `gradient_checkpointing` applies to each update's graph.
    pub optim: OptimConfig,
    pub checkpoint: CheckpointConfig,
    pub guard: Guard,
    pub log: RlLog,
    /// The products' precision, as in cold start (`auto`: bf16 on CUDA, f32 on CPU).
    pub precision: Precision,
}

impl Default for RlConfig {
    fn default() -> Self {
        let optim = OptimConfig { lr: 1e-6, batch_size: 32, grad_accum: 8, ..Default::default() };
        Self {
            model: PathBuf::from("runs/train/cold_start/model"),
            data: RlData::default(),
            rollout: RolloutConfig::default(),
            rewards: RewardWeights::default(),
            loss: RlLoss::default(),
            optim,
            checkpoint: CheckpointConfig::default(),
            guard: Guard::default(),
            log: RlLog::default(),
            precision: Precision::Auto,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlData {
    /// The pipeline's run directory.
    pub run_dir: PathBuf,
    /// `rl` (the pipeline's `triples_rl`) or `cold_start`.
    pub split: String,
    pub seed: u64,
    /// As in cold start: training refuses any triple of a query held out by need.
    pub needs: Option<PathBuf>,
    pub holdout_seed: u64,
    /// Longer item sequences are skipped and counted.
    pub max_item_tokens: usize,
}

impl Default for RlData {
    fn default() -> Self {
        Self {
            run_dir: PathBuf::from("runs/sample"),
            split: "rl".into(),
            seed: 42,
            needs: None,
            holdout_seed: 0,
            max_item_tokens: 96,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// G: samples per query.
    pub group: usize,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    /// CoT tokens allowed before the closing `</think>`.
    pub budget: usize,
    /// Policy updates (optimizer steps) over each rollout batch: 1 is on-policy (ρ ≡ 1, the
    /// clip never acts); more reuse the samples, and the clipped ratio keeps the later updates
    /// near the sampling policy (TRL's `num_iterations`, PPO's epochs).
    pub updates_per_rollout: usize,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self { group: 8, temperature: 1.0, top_k: 0, top_p: 1.0, budget: 16, updates_per_rollout: 1 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardWeights {
    pub format: f64,
    pub length: f64,
    pub retrieval: f64,
    /// Items the retrieval reward ranks each sample among: the step's drawn positives, topped up
    /// to this many with positives of other queries of the split (drawn per step, seeded; at
    /// most the split's distinct items). 0: the step's items only, as the paper, whose step has
    /// 256 queries. With a few queries a step the reward is near 1 for every sample and carries
    /// no signal; 256 ranks as the paper's batch does.
    pub ranked_items: usize,
}

impl Default for RewardWeights {
    fn default() -> Self {
        Self { format: 0.5, length: 0.2, retrieval: 1.0, ranked_items: 0 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlLoss {
    pub scaling: Scaling,
    pub objective: ObjectiveConfig,
    /// γ1 (GRPO) and γ2 (InfoNCE of the sampled queries' embeddings).
    pub grpo_weight: f64,
    pub infonce_weight: f64,
    pub temperature: f64,
    /// β of the k3 KL estimate to the starting (cold-start) model, loaded once when above 0.
    /// 0 by default, as the paper (and TRL since DAPO) leave it out.
    pub kl_weight: f64,
}

impl Default for RlLoss {
    fn default() -> Self {
        Self {
            scaling: Scaling::Group,
            objective: ObjectiveConfig::default(),
            grpo_weight: 1.0,
            infonce_weight: 0.1,
            temperature: 0.05,
            kl_weight: 0.0,
        }
    }
}

/// Stops the run, naming the step and the last good checkpoint, when the policy collapses: when
/// a measure crosses its bound during the run (a policy that starts outside one is only warned
/// about).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guard {
    /// Above this share of samples that do not close their CoT properly (1 turns it off).
    pub max_format_failure: f64,
    /// Below this entropy estimate of the sampled tokens (0 turns it off).
    pub min_entropy: f64,
}

impl Default for Guard {
    fn default() -> Self {
        Self { max_format_failure: 0.95, min_entropy: 0.01 }
    }
}

/// What a run writes beside `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RlLog {
    /// Queries per step whose G samples go to `completions.jsonl` (the completion as written,
    /// special tokens included, with each reward, the rank and the advantage), as TRL logs
    /// completions: what shows a reward being earned or gamed. 0: none.
    pub completions: usize,
}

impl Default for RlLog {
    fn default() -> Self {
        Self { completions: 4 }
    }
}

impl RlConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = read_toml(path)?;
        config.validate().with_context(|| path.display().to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        if o.batch_size == 0
            || o.grad_accum == 0
            || o.epochs == 0
            || self.rollout.group == 0
            || self.rollout.updates_per_rollout == 0
        {
            bail!(
                "optim.batch_size, optim.grad_accum, optim.epochs, rollout.group and rollout.updates_per_rollout \
                 must be at least 1"
            );
        }
        let l = &self.loss;
        if [l.grpo_weight, l.infonce_weight, l.kl_weight].iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            bail!("loss.grpo_weight, loss.infonce_weight and loss.kl_weight must be finite and at least 0");
        }
        if !matches!(self.data.split.as_str(), "rl" | "cold_start") {
            bail!("data.split is `{}`; expected `rl` or `cold_start`", self.data.split);
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) || !(0.0..1.0).contains(&o.warmup_ratio) {
            bail!("optim.lr must be positive and optim.warmup_ratio in [0, 1)");
        }
        if self.checkpoint.every_steps == 0 || self.checkpoint.keep == 0 {
            bail!("checkpoint.every_steps and checkpoint.keep must be at least 1");
        }
        if self.rollout.temperature <= 0.0 {
            bail!("rollout.temperature must be above 0 (RL samples; greedy decoding gives one sample per group)");
        }
        Ok(())
    }
}
