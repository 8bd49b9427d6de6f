//! Generation with a KV cache over a batch whose sequences join and leave between decode steps
//! (continuous batching): prompts of different lengths are left-padded, every token carries its
//! own position, and a sequence that finishes leaves the batch at once. Sampling (repetition
//! penalties, then greedy or temperature, top-k, top-p, seeded) runs on the host over each row's
//! logits.

use std::sync::Arc;

use burn::tensor::backend::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::constrain::Constraint;
use super::decoder::Decoder;
use super::kv_cache::KvCache;
use super::layers::host;
use super::penalties::Penalties;
use super::tokenizer::TextTokenizer;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    /// 1 means no nucleus cut.
    pub top_p: f32,
    pub max_tokens: usize,
    pub seed: u64,
    /// Texts that end a completion; the completion stops before them.
    pub stop: Vec<String>,
    /// Token ids that end a completion (EOS, end of turn); they are not part of the text.
    pub stop_ids: Vec<u32>,
    /// Completions per prompt; they share the prompt's prefill.
    pub n: usize,
    /// Alternatives to report beside each generated token (OpenAI's `top_logprobs`).
    pub top_logprobs: usize,
    /// A grammar the text must follow (`response_format`); each sample walks its own copy.
    pub constraint: Option<Constraint>,
    /// A stop id that ends the completion is kept in `ids` and `logprobs` (RL needs the
    /// probability of the token that closed a sample; the text never shows it).
    pub keep_stop: bool,
    /// Applied to the logits before the grammar's mask and the sampling; the log-probabilities
    /// reported are those of the distribution sampled from.
    pub penalties: Penalties,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 64,
            seed: 0,
            stop: Vec::new(),
            stop_ids: Vec::new(),
            n: 1,
            top_logprobs: 0,
            constraint: None,
            keep_stop: false,
            penalties: Penalties::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One finished completion.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The caller's tag of the prompt and the sample index within its `n`.
    pub tag: u64,
    pub sample: usize,
    pub prompt_tokens: usize,
    pub ids: Vec<u32>,
    pub text: String,
    /// log p(token) under the model (temperature 1), one per generated id.
    pub logprobs: Vec<f32>,
    /// The `top_logprobs` most likely tokens at each step, with their log-probabilities.
    pub top: Vec<Vec<(u32, f32)>>,
    pub finish_reason: FinishReason,
}

struct Running {
    tag: u64,
    sample: usize,
    prompt_tokens: usize,
    params: Arc<SamplingParams>,
    /// Kept only for the repetition penalty, the one control that counts the prompt.
    prompt: Vec<u32>,
    rng: ChaCha8Rng,
    constraint: Option<Constraint>,
    ids: Vec<u32>,
    logprobs: Vec<f32>,
    top: Vec<Vec<(u32, f32)>>,
    text: String,
    finished: Option<FinishReason>,
}

/// The running batch: one KV cache row per running sequence.
pub struct Engine<'m, B: Backend> {
    model: &'m Decoder<B>,
    tokenizer: &'m TextTokenizer,
    cache: Option<KvCache>,
    running: Vec<Running>,
    done: Vec<Completion>,
}

impl<'m, B: Backend> Engine<'m, B> {
    pub fn new(model: &'m Decoder<B>, tokenizer: &'m TextTokenizer) -> Self {
        Self { model, tokenizer, cache: None, running: Vec::new(), done: Vec::new() }
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Prefills new prompts as one left-padded batch and adds `n` sequences per prompt.
    pub fn admit(&mut self, prompts: Vec<(u64, Vec<u32>, Arc<SamplingParams>)>) -> Result<()> {
        if prompts.is_empty() {
            return Ok(());
        }
        let width = prompts.iter().map(|(_, ids, _)| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(prompts.len());
        let mut valid = Vec::with_capacity(prompts.len());
        for (_, p, _) in &prompts {
            let pad = width - p.len();
            ids.push(std::iter::repeat_n(0, pad).chain(p.iter().copied()).collect::<Vec<u32>>());
            valid
                .push(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())).collect::<Vec<bool>>());
        }
        let mut cache = KvCache::default();
        let hidden = self.model.forward(&ids, &valid, Some(&mut cache));
        let [b, t, h] = hidden.dims();
        let last = hidden.narrow(1, t - 1, 1).reshape([b, 1, h]);
        let logits = host(self.model.logits(last));
        let vocab = logits.len() / b;
        let mut rows = Vec::new();
        let mut new = Vec::new();
        for (row, (tag, prompt, params)) in prompts.into_iter().enumerate() {
            for sample in 0..params.n.max(1) {
                rows.push(row);
                let rng = ChaCha8Rng::seed_from_u64(params.seed.wrapping_add(sample as u64));
                let mut seq = Running {
                    tag,
                    sample,
                    prompt_tokens: prompt.len(),
                    params: params.clone(),
                    prompt: if params.penalties.repetition != 1.0 { prompt.clone() } else { Vec::new() },
                    rng,
                    constraint: params.constraint.clone(),
                    ids: Vec::new(),
                    logprobs: Vec::new(),
                    top: Vec::new(),
                    text: String::new(),
                    finished: None,
                };
                seq.push(&logits[row * vocab..(row + 1) * vocab], self.tokenizer)?;
                new.push(seq);
            }
        }
        let cache = if rows.iter().enumerate().all(|(i, &r)| i == r) { cache } else { cache.select(&rows) };
        match self.cache.as_mut() {
            Some(old) => old.extend(cache),
            None => self.cache = Some(cache),
        }
        self.running.extend(new);
        self.retire();
        Ok(())
    }

    /// One decode step for every running sequence.
    pub fn step(&mut self) -> Result<()> {
        let Some(cache) = self.cache.as_mut() else { return Ok(()) };
        let ids: Vec<Vec<u32>> =
            self.running.iter().map(|s| vec![*s.ids.last().expect("a running sequence has a token")]).collect();
        let valid = vec![vec![true]; ids.len()];
        let hidden = self.model.forward(&ids, &valid, Some(cache));
        let logits = host(self.model.logits(hidden));
        let vocab = logits.len() / ids.len();
        for (row, seq) in self.running.iter_mut().enumerate() {
            seq.push(&logits[row * vocab..(row + 1) * vocab], self.tokenizer)?;
        }
        self.retire();
        Ok(())
    }

    /// The text generated so far by each running sequence: `(tag, sample, text)`.
    pub fn partial(&self) -> impl Iterator<Item = (u64, usize, &str)> {
        self.running.iter().map(|s| (s.tag, s.sample, s.text.as_str()))
    }

    /// Finished sequences so far, removed from the engine.
    pub fn take_done(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.done)
    }

    /// Moves finished sequences out of the batch and their rows out of the cache.
    fn retire(&mut self) {
        if self.running.iter().all(|s| s.finished.is_none()) {
            return;
        }
        let keep: Vec<usize> = (0..self.running.len()).filter(|&i| self.running[i].finished.is_none()).collect();
        let mut kept = Vec::with_capacity(keep.len());
        for (i, seq) in std::mem::take(&mut self.running).into_iter().enumerate() {
            match seq.finished {
                Some(reason) => self.done.push(Completion {
                    tag: seq.tag,
                    sample: seq.sample,
                    prompt_tokens: seq.prompt_tokens,
                    ids: seq.ids,
                    text: seq.text,
                    logprobs: seq.logprobs,
                    top: seq.top,
                    finish_reason: reason,
                }),
                None => {
                    debug_assert!(keep.contains(&i));
                    kept.push(seq);
                }
            }
        }
        self.running = kept;
        self.cache = match self.cache.take() {
            Some(_) if keep.is_empty() => None,
            Some(cache) => Some(cache.select(&keep)),
            None => None,
        };
    }
}

impl Running {
    /// Samples the next token from `logits`, records it and checks the stop conditions.
    fn push(&mut self, logits: &[f32], tokenizer: &TextTokenizer) -> Result<()> {
        // A complete document ends the completion even when EOS is not a stop id (`ignore_eos`).
        if self.constraint.as_ref().is_some_and(Constraint::is_complete) {
            self.finished = Some(FinishReason::Stop);
            return Ok(());
        }
        let changed;
        let logits = if self.constraint.is_none() && self.params.penalties.is_off() {
            logits
        } else {
            let mut copy = logits.to_vec();
            self.params.penalties.apply(&mut copy, &self.prompt, &self.ids);
            if let Some(constraint) = self.constraint.as_mut() {
                constraint.mask(&mut copy)?;
            }
            changed = copy;
            &changed[..]
        };
        let token = sample(logits, &self.params, &mut self.rng);
        let lse = log_sum_exp(logits);
        let p = &self.params;
        if p.stop_ids.contains(&token) {
            if p.keep_stop {
                self.ids.push(token);
                self.logprobs.push(logits[token as usize] - lse);
            }
            self.finished = Some(FinishReason::Stop);
            return Ok(());
        }
        if let Some(constraint) = self.constraint.as_mut() {
            constraint.commit(token)?;
        }
        self.ids.push(token);
        self.logprobs.push(logits[token as usize] - lse);
        if p.top_logprobs > 0 {
            let mut order: Vec<u32> = (0..logits.len() as u32).collect();
            let k = p.top_logprobs.min(order.len());
            order.select_nth_unstable_by(k - 1, |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
            order.truncate(k);
            order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
            self.top.push(order.into_iter().map(|i| (i, logits[i as usize] - lse)).collect());
        }
        self.text = tokenizer.decode(&self.ids, true)?;
        if let Some(cut) = p.stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(cut);
            self.finished = Some(FinishReason::Stop);
        } else if self.ids.len() >= p.max_tokens {
            self.finished = Some(FinishReason::Length);
        }
        Ok(())
    }
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + logits.iter().map(|&l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy at temperature 0; otherwise softmax(logits / T) cut to the top-k, then to the smallest
/// set whose mass reaches top-p, and sampled.
pub fn sample(logits: &[f32], p: &SamplingParams, rng: &mut impl Rng) -> u32 {
    if p.temperature <= 0.0 {
        return argmax(logits);
    }
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    if p.top_k > 0 {
        order.truncate(p.top_k);
    }
    let max = logits[order[0] as usize];
    let mut probs: Vec<f64> =
        order.iter().map(|&i| (((logits[i as usize] - max) / p.temperature) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= total);
    if p.top_p < 1.0 {
        let mut mass = 0.0;
        let keep = probs.iter().position(|&x| {
            mass += x;
            mass >= p.top_p as f64
        });
        let keep = keep.map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        order.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, &x) in probs.iter().enumerate() {
        u -= x;
        if u <= 0.0 {
            return order[i];
        }
    }
    order[probs.len() - 1]
}

/// Runs every prompt to completion; completions come back in prompt order, samples in order.
pub fn generate<B: Backend>(
    model: &Decoder<B>,
    tokenizer: &TextTokenizer,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
) -> Result<Vec<Completion>> {
    // Prompt i samples from seed + i·φ (then + sample): with one seed for every prompt, sample j of
    // each prompt would draw the same random numbers. The first prompt keeps the seed as given.
    let per_prompt = |i: usize| {
        let seed = params.seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Arc::new(SamplingParams { seed, ..params.clone() })
    };
    let mut engine = Engine::new(model, tokenizer);
    engine.admit(prompts.iter().enumerate().map(|(i, p)| (i as u64, p.clone(), per_prompt(i))).collect())?;
    while engine.running() > 0 {
        engine.step()?;
    }
    let mut done = engine.take_done();
    done.sort_by_key(|c| (c.tag, c.sample));
    Ok(done)
}
