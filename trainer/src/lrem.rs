//! A cold-start model at inference, as the paper runs it online: a query gets a greedy CoT of at
//! most 16 tokens after `<think>`, closed with `</think><emb>`, and the `<emb>` state is its
//! embedding; an item is `Item: title` followed by `<emb>`. Used by `eval` and by `serve --lrem`.

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::err;
use crate::error::Result;
use crate::format::{EMB, END_THINK, LremSettings, Prompting, cot_stop_ids, pool_last};
use crate::model::LanguageModel;
use crate::model::generate::{SamplingParams, generate};

pub struct LremModel<B: Backend> {
    pub lm: LanguageModel<B>,
    pub settings: LremSettings,
    end_think: u32,
    emb: u32,
}

/// A query's embedding and the CoT the model wrote for it.
pub struct QueryEmbedding {
    pub vector: Vec<f32>,
    pub cot: String,
    pub tokens: usize,
    /// How the greedy CoT ended (a direct embedder writes none: `Budget` of 0 tokens).
    pub ending: CotEnding,
}

/// What ended a generated CoT. Any of the first three closes it for the embedding; only
/// `</think>` is the format RL's reward asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CotEnding {
    /// `</think>`.
    Closed,
    /// `<emb>` with no `</think>`.
    Emb,
    /// The chat template's end of turn or EOS.
    EndOfTurn,
    /// The token budget.
    Budget,
}

impl<B: Backend> LremModel<B> {
    /// An exported cold-start folder (`model/` of a training run, with `lrem.json`).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let lm = LanguageModel::<B>::load(dir, device)?;
        let settings = LremSettings::read(dir)?;
        Self::new(lm, settings).map_err(|e| e.context(dir.display().to_string()))
    }

    /// A model that already has the LREM tokens (an export, or a base model after
    /// `add_lrem_tokens`: the format before any training step).
    pub fn new(lm: LanguageModel<B>, settings: LremSettings) -> Result<Self> {
        let token = |s: &str| lm.tokenizer.token_id(s).ok_or_else(|| err!("the tokenizer lacks {s}"));
        let (end_think, emb) = (token(END_THINK)?, token(EMB)?);
        Ok(Self { lm, settings, end_think, emb })
    }

    pub fn prompting(&self) -> Prompting<'_> {
        Prompting { tokenizer: &self.lm.tokenizer, system_prompt: self.settings.system_prompt.clone() }
    }

    pub fn embed_items(&self, titles: &[&str], batch: usize) -> Result<Vec<Vec<f32>>> {
        let p = self.prompting();
        let seqs = titles.iter().map(|t| p.item_sequence(t)).collect::<Result<Vec<_>>>()?;
        Ok(pool_last(&self.lm.model, &seqs, batch))
    }

    /// Greedy CoT (at most `cot_max_tokens`, under the settings' repetition controls), then the
    /// `<emb>` state.
    pub fn embed_queries(&self, queries: &[&str], cot_max_tokens: usize, batch: usize) -> Result<Vec<QueryEmbedding>> {
        let p = self.prompting();
        if self.settings.direct {
            let seqs = queries.iter().map(|q| p.direct_sequence(q).map(|s| s.ids)).collect::<Result<Vec<_>>>()?;
            let vectors = pool_last(&self.lm.model, &seqs, batch);
            let tokens = seqs.iter().map(Vec::len);
            return Ok(vectors
                .into_iter()
                .zip(tokens)
                .map(|(vector, tokens)| QueryEmbedding {
                    vector,
                    cot: String::new(),
                    tokens,
                    ending: CotEnding::Budget,
                })
                .collect());
        }
        let prompts = queries.iter().map(|q| p.query_prompt(q)).collect::<Result<Vec<_>>>()?;
        let stop_ids = cot_stop_ids(&self.lm.tokenizer, self.end_think, self.emb);
        let params = SamplingParams {
            max_tokens: cot_max_tokens,
            stop_ids: stop_ids.clone(),
            penalties: self.settings.cot_penalties,
            // The stop token is kept to tell how the CoT ended; it never enters the text.
            keep_stop: true,
            ..Default::default()
        };
        let done = generate(&self.lm.model, &self.lm.tokenizer, &prompts, &params)?;
        let seqs: Vec<Vec<u32>> = prompts
            .iter()
            .zip(&done)
            .map(|(prompt, c)| {
                let cot = c.ids.iter().copied().filter(|i| !stop_ids.contains(i));
                prompt.iter().copied().chain(cot).chain([self.end_think, self.emb]).collect()
            })
            .collect();
        let vectors = pool_last(&self.lm.model, &seqs, batch);
        Ok(vectors
            .into_iter()
            .zip(done)
            .zip(&seqs)
            .map(|((vector, c), s)| {
                let ending = match c.ids.last() {
                    Some(&t) if t == self.end_think => CotEnding::Closed,
                    Some(&t) if t == self.emb => CotEnding::Emb,
                    Some(t) if stop_ids.contains(t) => CotEnding::EndOfTurn,
                    _ => CotEnding::Budget,
                };
                QueryEmbedding { vector, cot: c.text.trim().to_string(), tokens: s.len(), ending }
            })
            .collect())
    }

    /// The `<emb>` state with a given CoT (the ablations, or a CoT from elsewhere).
    pub fn embed_queries_with_cot(&self, queries: &[(&str, String)], batch: usize) -> Result<Vec<Vec<f32>>> {
        let p = self.prompting();
        let seqs = queries.iter().map(|(q, c)| p.query_sequence(q, c).map(|s| s.ids)).collect::<Result<Vec<_>>>()?;
        Ok(pool_last(&self.lm.model, &seqs, batch))
    }
}
