//! The LREM sequence format, in one place: the tokens it adds, how a query, a query with its
//! CoT, an item and a plain text become token sequences (chat template, `<think>…</think><emb>`),
//! what an exported model records about it (`lrem.json`), and how the `<emb>` state is pooled.
//! Training, evaluation, serving and [`crate::lrem`] all go through here.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::error::{Context, Result};
use crate::model::LanguageModel;
use crate::model::decoder::Decoder;
use crate::model::layers::host;
use crate::model::penalties::Penalties;
use crate::model::tokenizer::{ChatMessage, TextTokenizer};

pub const THINK: &str = "<think>";
pub const END_THINK: &str = "</think>";
pub const EMB: &str = "<emb>";
/// The tokens LREM adds to a base decoder's vocabulary.
pub const TOKENS: [&str; 3] = [THINK, END_THINK, EMB];

/// Where the new tokens' embedding rows start (`[model] new_token_init`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewTokenInit {
    /// `</think>` starts as a copy of the base model's end-of-turn token (`<|im_end|>` for
    /// SmolLM2 and Qwen2.5), `<think>` and `<emb>` at the mean row; all at the mean where the
    /// tokenizer names no end-of-turn token. Ending the CoT is then as likely as ending the turn
    /// from the first step: from the mean row, a step of size lr per coordinate moves the row too
    /// little for `</think>` ever to win (docs/experiment.md, "Why the cold start never closes
    /// its CoT").
    #[default]
    EndOfTurn,
    /// Every new row at the mean of the existing rows (Hewitt, 2021; `mean_resizing` in
    /// transformers).
    Mean,
}

impl<B: Backend> LanguageModel<B> {
    /// Adds `<think>`, `</think>`, `<emb>` to the tokenizer and grows the embedding to match,
    /// the new rows started as [`NewTokenInit::default`].
    pub fn add_lrem_tokens(self) -> Self {
        self.add_lrem_tokens_as(NewTokenInit::default())
    }

    /// [`Self::add_lrem_tokens`] with the new rows started as `init` says. Tokens already in
    /// the vocabulary (an LREM model) are left as they are.
    pub fn add_lrem_tokens_as(mut self, init: NewTokenInit) -> Self {
        let end_of_turn = self.tokenizer.stop_ids().first().copied();
        let rows: Vec<Option<u32>> = TOKENS
            .iter()
            .filter(|t| self.tokenizer.token_id(t).is_none())
            .map(|&t| if t == END_THINK && init == NewTokenInit::EndOfTurn { end_of_turn } else { None })
            .collect();
        let added = self.tokenizer.add_special_tokens(&TOKENS);
        debug_assert_eq!(added, rows.len());
        self.model = self.model.grow_vocab(&rows);
        self.config.vocab_size += added;
        self
    }
}

/// The ids that end a generated CoT, at inference (`lrem.rs`) and in RL's rollouts alike: the
/// tokenizer's end of turn, `</think>` and `<emb>`.
pub fn cot_stop_ids(tokenizer: &TextTokenizer, end_think: u32, emb: u32) -> Vec<u32> {
    let mut ids = tokenizer.stop_ids();
    ids.extend([end_think, emb]);
    ids
}

/// The `lrem.json` beside an exported model: how its sequences are rendered.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LremSettings {
    pub system_prompt: Option<String>,
    /// Trained as a direct embedder (the fair baseline): a query is `prompt<emb>`, with no
    /// `<think>` and no CoT.
    #[serde(default)]
    pub direct: bool,
    /// Repetition controls for the greedy CoT at inference (what `generation_config.json` is to
    /// a Hugging Face model); off unless set here or by `eval --cot-penalties`.
    #[serde(default, skip_serializing_if = "Penalties::is_off")]
    pub cot_penalties: Penalties,
}

impl LremSettings {
    /// The `lrem.json` of an exported model folder.
    pub fn read(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("lrem.json");
        let bytes =
            std::fs::read(&path).with_context(|| format!("{}: missing (not a cold-start model?)", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| path.display().to_string())
    }
}

/// How texts become sequences for one model: its tokenizer, template and system turn.
pub struct Prompting<'t> {
    pub tokenizer: &'t TextTokenizer,
    pub system_prompt: Option<String>,
}

/// A query sequence and where its trained continuation starts.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySequence {
    pub ids: Vec<u32>,
    /// Index of the first NTP target: the token after `<think>`.
    pub first_target: usize,
}

impl QuerySequence {
    /// The positions NTP trains: the CoT and `</think>`. The last token, `<emb>`, is no target:
    /// inference and RL's rollouts stop at `</think>` and append `<emb>` themselves, so a model
    /// never generates it, and as a target it cost ~7 of a sequence's ~8 nats at the end of a
    /// cold start (docs/experiment.md).
    pub fn targets(&self) -> std::ops::Range<usize> {
        let end = self.ids.len().saturating_sub(1);
        self.first_target.max(1).min(end)..end
    }
}

impl Prompting<'_> {
    fn messages(&self, user: String) -> Vec<ChatMessage> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system_prompt {
            messages.push(ChatMessage { role: "system".into(), content: system.clone() });
        }
        messages.push(ChatMessage { role: "user".into(), content: user });
        messages
    }

    /// The prompt a model continues from at inference: the template's generation prompt
    /// followed by `<think>`.
    pub fn query_prompt(&self, query: &str) -> Result<Vec<u32>> {
        let text = self.tokenizer.render_chat(&self.messages(query.to_string()), true)?;
        self.tokenizer.encode(&format!("{text}{THINK}"), false)
    }

    /// `prompt<think>cot</think><emb>`.
    pub fn query_sequence(&self, query: &str, cot: &str) -> Result<QuerySequence> {
        let mut ids = self.query_prompt(query)?;
        let first_target = ids.len();
        ids.extend(self.tokenizer.encode(&format!("{cot}{END_THINK}{EMB}"), false)?);
        Ok(QuerySequence { ids, first_target })
    }

    /// `prompt<emb>` for a query, with no `<think>`: the direct embedder's query side (no NTP
    /// target).
    pub fn direct_sequence(&self, query: &str) -> Result<QuerySequence> {
        let text = self.tokenizer.render_chat(&self.messages(query.to_string()), true)?;
        let ids = self.tokenizer.encode(&format!("{text}{EMB}"), false)?;
        Ok(QuerySequence { first_target: ids.len(), ids })
    }

    /// `prompt<emb>` for an item title.
    pub fn item_sequence(&self, title: &str) -> Result<Vec<u32>> {
        let text = self.tokenizer.render_chat(&self.messages(format!("Item: {title}")), true)?;
        self.tokenizer.encode(&format!("{text}{EMB}"), false)
    }

    /// A plain rendering with no LREM tokens (the base decoder's last-token pooling baseline).
    pub fn plain_sequence(&self, user: &str) -> Result<Vec<u32>> {
        let text = self.tokenizer.render_chat(&self.messages(user.to_string()), true)?;
        self.tokenizer.encode(&text, false)
    }
}

/// Unit-length rows on the host.
pub(crate) fn normalised(rows: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    rows.into_iter()
        .map(|v| {
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.into_iter().map(|x| x / n).collect()
        })
        .collect()
}

/// The last position's hidden state of each sequence, batched by length.
pub fn pool_last<B: Backend>(model: &Decoder<B>, seqs: &[Vec<u32>], batch: usize) -> Vec<Vec<f32>> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by_key(|&i| seqs[i].len());
    let mut out = vec![Vec::new(); seqs.len()];
    for chunk in order.chunks(batch.max(1)) {
        let refs: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].as_slice()).collect();
        let (emb, _) = last_hidden(model, &refs);
        let h = emb.dims()[1];
        let values = host(emb);
        for (r, &i) in chunk.iter().enumerate() {
            out[i] = values[r * h..(r + 1) * h].to_vec();
        }
    }
    normalised(out)
}

/// Left-pads sequences to one length; `valid` marks real tokens.
pub fn left_pad(seqs: &[&[u32]]) -> (Vec<Vec<u32>>, Vec<Vec<bool>>) {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let ids = seqs.iter().map(|s| std::iter::repeat_n(0, t - s.len()).chain(s.iter().copied()).collect()).collect();
    let valid = seqs.iter().map(|s| (0..t).map(|i| i >= t - s.len()).collect()).collect();
    (ids, valid)
}

/// Runs sequences (each ending in the pooled token) and returns the last position's hidden
/// state `[batch, hidden]` and all hidden states `[batch, t, hidden]`.
pub fn last_hidden<B: Backend>(model: &Decoder<B>, seqs: &[&[u32]]) -> (Tensor<B, 2>, Tensor<B, 3>) {
    let (ids, valid) = left_pad(seqs);
    let hidden = model.forward(&ids, &valid, None);
    (last_position(hidden.clone()), hidden)
}

/// The hidden state at each row's last position, `[batch, hidden]`: the pooled token's.
pub fn last_position<B: Backend>(hidden: Tensor<B, 3>) -> Tensor<B, 2> {
    let [b, t, h] = hidden.dims();
    hidden.narrow(1, t - 1, 1).reshape([b, h])
}
