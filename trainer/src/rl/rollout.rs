//! Rollouts: G sampled CoTs per query after its `<think>`, each sampled token's log-probability
//! under the sampling policy, and the same tokens' log-probabilities under a policy again (with
//! the graph, for the update).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::rewards::parse_completion;
use crate::error::Result;
use crate::format::{cot_stop_ids, left_pad};
use crate::model::decoder::Decoder;
use crate::model::generate::{SamplingParams, generate};
use crate::model::tokenizer::TextTokenizer;

#[derive(Debug, Clone)]
pub struct RolloutParams {
    /// Samples per query (G).
    pub group: usize,
    pub temperature: f32,
    /// 0: no top-k cut.
    pub top_k: usize,
    pub top_p: f32,
    /// CoT tokens allowed; the closing `</think>` comes on top.
    pub budget: usize,
    pub seed: u64,
}

/// One sampled completion of one query.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Index of the query's prompt.
    pub query: usize,
    pub sample: usize,
    /// The sampled ids after `<think>`, with the token that ended the sample when the model wrote
    /// one (`</think>`, `<emb>`, or end of turn).
    pub ids: Vec<u32>,
    /// log π_old of each sampled id (temperature 1).
    pub logprobs: Vec<f32>,
    pub cot_tokens: usize,
    /// `</think>` was written.
    pub closed: bool,
    pub well_formed: bool,
}

impl Rollout {
    /// `prompt CoT</think><emb>`: the sequence whose last state is this sample's embedding. A
    /// sample that did not close its CoT in the budget is closed here (its format reward is 0).
    pub fn embedding_sequence(&self, prompt: &[u32], end_think: u32, emb: u32, stop_ids: &[u32]) -> Vec<u32> {
        let cot = self.ids[..self.cot_tokens].iter().copied().filter(|t| *t != emb && !stop_ids.contains(t));
        prompt.iter().copied().chain(cot).chain([end_think, emb]).collect()
    }
}

/// Samples `params.group` completions for each prompt (each ending in `<think>`); they share
/// the prompt's prefill. Returned in prompt order, samples in order.
pub fn sample<B: Backend>(
    model: &Decoder<B>,
    tokenizer: &TextTokenizer,
    prompts: &[Vec<u32>],
    params: &RolloutParams,
    end_think: u32,
    emb: u32,
) -> Result<Vec<Rollout>> {
    // A sample ends where inference's CoT ends (`lrem.rs`): at `</think>`, `<emb>` or end of
    // turn; `<emb>` is appended for its embedding. Sampling on past `</think>` asked the model to
    // write `<emb>` too, which inference never needs, and the cold start gives it 0.0006 there.
    let stop_ids = cot_stop_ids(tokenizer, end_think, emb);
    let sampling = SamplingParams {
        temperature: params.temperature,
        top_k: params.top_k,
        top_p: params.top_p,
        max_tokens: params.budget + 1,
        seed: params.seed,
        stop_ids,
        n: params.group,
        keep_stop: true,
        ..Default::default()
    };
    let done = generate(model, tokenizer, prompts, &sampling)?;
    Ok(done
        .into_iter()
        .map(|c| {
            let ending = parse_completion(&c.ids, end_think, emb, &sampling.stop_ids);
            Rollout {
                query: c.tag as usize,
                sample: c.sample,
                ids: c.ids,
                logprobs: c.logprobs,
                cot_tokens: ending.cot_tokens,
                closed: ending.closed,
                well_formed: ending.well_formed,
            }
        })
        .collect())
}

/// log π(sampled token) at `temperature` for each `(prompt, sampled ids)`, as `[samples, t]`
/// with sample i's tokens in columns `0..len_i` (t = the longest; the rest is padding, 0 after
/// the caller's mask). One forward pass over the left-padded sequences.
pub fn sampled_logprobs<B: Backend>(
    model: &Decoder<B>,
    samples: &[(&[u32], &[u32])],
    temperature: f32,
) -> Tensor<B, 2> {
    let seqs: Vec<Vec<u32>> = samples.iter().map(|(p, s)| p.iter().chain(s.iter()).copied().collect()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let (ids, valid) = left_pad(&refs);
    let hidden = model.forward(&ids, &valid, None);
    let t = hidden.dims()[1];
    let at: Vec<Predicted<'_>> = samples
        .iter()
        .enumerate()
        .map(|(i, (prompt, sampled))| Predicted { row: i, first: t - seqs[i].len() + prompt.len() - 1, ids: sampled })
        .collect();
    logprobs_at(model, hidden, &at, temperature)
}

/// Where a sample's tokens are predicted in a forward pass: row `row` of the hidden states, its
/// first sampled token from position `first` (the prompt's last), the next from `first + 1`, ….
pub struct Predicted<'a> {
    pub row: usize,
    pub first: usize,
    pub ids: &'a [u32],
}

/// log π(sampled token) at `temperature` from hidden states `[b, t, h]` already computed, laid
/// out as [`sampled_logprobs`] returns them. Only the positions that predict a sampled token go
/// through the LM head.
pub fn logprobs_at<B: Backend>(
    model: &Decoder<B>,
    hidden: Tensor<B, 3>,
    samples: &[Predicted<'_>],
    temperature: f32,
) -> Tensor<B, 2> {
    let device = hidden.device();
    let [b, t, h] = hidden.dims();
    let width = samples.iter().map(|s| s.ids.len()).max().unwrap_or(0).max(1);
    let mut rows = Vec::with_capacity(samples.len() * width);
    let mut targets = Vec::with_capacity(samples.len() * width);
    for s in samples {
        for j in 0..width {
            // Padding columns repeat the first sampled token's row: computed, then masked.
            let j_real = if j < s.ids.len() { j } else { 0 };
            rows.push((s.row * t + s.first + j_real) as i64);
            targets.push(s.ids.get(j_real).copied().unwrap_or(0) as i64);
        }
    }
    let n = rows.len();
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let picked = hidden.reshape([b * t, h]).select(0, rows);
    let logits = model.logits(picked.reshape([1, n, h]));
    let vocab = logits.dims()[2];
    let logits = logits.reshape([n, vocab]);
    let logits = if temperature > 0.0 && temperature != 1.0 { logits.div_scalar(temperature) } else { logits };
    let targets = Tensor::<B, 2, Int>::from_data(TensorData::new(targets, [n, 1]), &device);
    log_softmax(logits, 1).gather(1, targets).reshape([samples.len(), width])
}
