//! What a cold-start run starts from: the base model with the LREM tokens, the prepared
//! examples, the schedule of every epoch, and the model, optimizer and position of the newest
//! checkpoint when resuming.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::AdamW;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::{self, TrainState};
use super::config::TrainConfig;
use super::data::{Example, epoch_batches, prepare_as};
use super::{RunOptions, metrics, optim};
use crate::bail;
use crate::error::Result;
use crate::format::Prompting;
use crate::model::LanguageModel;
use crate::model::decoder::{Decoder, DecoderConfig};
use crate::model::tokenizer::TextTokenizer;
use crate::triples::{self, Split};

pub(super) type Optim<B> = OptimizerAdaptor<AdamW, Decoder<B>, B>;

pub(super) struct Setup<B: AutodiffBackend> {
    pub lm_config: DecoderConfig,
    pub tokenizer: TextTokenizer,
    pub examples: Vec<Example>,
    /// The batches of every epoch, as indices into `examples`.
    pub epochs: Vec<Vec<Vec<usize>>>,
    pub model: Decoder<B>,
    pub optim: Optim<B>,
    pub state: TrainState,
    pub last_saved: Option<PathBuf>,
}

impl<B: AutodiffBackend> Setup<B> {
    pub fn new(config: &TrainConfig, out: &Path, options: &RunOptions, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let root = options.group.is_root();
        // Rank 0 alone writes the run directory; the others read its checkpoints when resuming.
        let existing = if root { checkpoint::open_run(out, options.resume, config)? } else { checkpoint::list(out)? };
        let lm = LanguageModel::<B>::load(&config.model.path, device)?.add_lrem_tokens_as(config.model.new_token_init);
        let prompting = Prompting { tokenizer: &lm.tokenizer, system_prompt: config.model.system_prompt.clone() };
        let triples = triples::read(&config.data.run_dir, Split::ColdStart)?;
        if let Some(needs) = &config.data.needs {
            let split = crate::holdout::read(needs, config.data.holdout_seed)?;
            let source = format!("{} (triples_cold_start)", config.data.run_dir.display());
            crate::holdout::check_trainable(&triples, &split, &source)?;
        }
        let d = &config.data;
        let prepared = prepare_as(&triples, &prompting, d.max_query_tokens, d.max_item_tokens, d.cot)?;
        let skipped: String = prepared
            .skipped
            .iter()
            .map(|(q, i, why)| format!("{}\n", serde_json::json!({"query_id": q, "item_id": i, "reason": why})))
            .collect();
        if root {
            std::fs::write(out.join("skipped.jsonl"), skipped)?;
        }
        let examples = prepared.examples;
        let (epochs, total_steps) = schedule(&examples, config);

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
            if root {
                metrics::truncate(&metrics_path, state.step)?;
            }
            tracing::info!("resuming from {} (step {})", last.display(), state.step);
        } else if root {
            let _ = std::fs::remove_file(&metrics_path);
        }
        // Ranks that read different triples, configurations or checkpoints would still step in
        // lockstep, silently training on a mixture; they stop here instead. (A single process
        // has nothing to compare with.)
        if options.group.world() > 1 {
            let mut digest = std::hash::DefaultHasher::new();
            let e: Vec<_> =
                examples.iter().map(|e| (e.query_id, e.item_id, &e.query.ids, e.query.first_target, &e.item)).collect();
            let setup = (toml::to_string(config)?, e, model.num_params(), state, &epochs, options.stop_after);
            std::hash::Hash::hash(&setup, &mut digest);
            let what = "the configuration, examples, model, --stop-after or resumed step";
            options.group.check_same(what, std::hash::Hasher::finish(&digest))?;
        }
        let last_saved = existing.last().cloned();
        Ok(Self { lm_config: lm.config, tokenizer: lm.tokenizer, examples, epochs, model, optim, state, last_saved })
    }
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
