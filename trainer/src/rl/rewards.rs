//! The GRPO rewards: plain functions of one sampled completion and its batch, each weighted in
//! the config. A user adds one by implementing [`Reward`], as TRL's `reward_funcs` take a
//! function per reward.

/// What a reward sees of one sampled completion.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub query: &'a str,
    /// The sampled ids after `<think>`, as the model wrote them.
    pub ids: &'a [u32],
    /// Tokens of the CoT: before `</think>`, or every sampled token when it never came.
    pub cot_tokens: usize,
    /// The model wrote `</think>`.
    pub closed: bool,
    /// The model closed its CoT with `</think>` and wrote nothing after it but, optionally,
    /// `<emb>` (rollouts stop at `</think>` as inference does, which appends `<emb>` itself).
    pub well_formed: bool,
    /// 1 + the items of other queries in the batch that score at least as high as this query's
    /// best positive (see [`rank_of_positive`]).
    pub rank: usize,
    /// Items of the batch that ranking was over.
    pub items: usize,
}

pub trait Reward: Send + Sync {
    fn name(&self) -> &str;
    fn score(&self, sample: &Sample<'_>) -> f64;
}

/// 1 when the model closed its CoT with `</think>` ([`Sample::well_formed`]), else 0.
pub struct Format;

impl Reward for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn score(&self, s: &Sample<'_>) -> f64 {
        if s.well_formed { 1.0 } else { 0.0 }
    }
}

/// 1 when the CoT has at most `budget` tokens, else 0. The CoT is read as inference reads it
/// (`eval`, `serve --lrem`): ended by `</think>`, `<emb>` or end of turn. Paying only a CoT closed
/// with `</think>` was tried and measured (docs/experiment.md, 2026-12-07): with a cold start that
/// ends its CoTs on end of turn, RL then could not learn to stop at all, and its head-query gain
/// went with it. The format reward is what asks for `</think>`.
pub struct Length {
    pub budget: usize,
}

impl Reward for Length {
    fn name(&self) -> &str {
        "length"
    }
    fn score(&self, s: &Sample<'_>) -> f64 {
        if s.cot_tokens <= self.budget { 1.0 } else { 0.0 }
    }
}

/// 1 − ln(rank)/ln(N): 1 when the positive ranks first, 0 when it ranks last.
pub struct Retrieval;

impl Reward for Retrieval {
    fn name(&self) -> &str {
        "retrieval"
    }
    fn score(&self, s: &Sample<'_>) -> f64 {
        retrieval_reward(s.rank, s.items)
    }
}

/// 1 − ln(rank)/ln(n); with one item there is nothing to rank against and the reward is 1.
pub fn retrieval_reward(rank: usize, n: usize) -> f64 {
    assert!(rank >= 1 && rank <= n.max(1), "rank {rank} of {n} items");
    if n <= 1 { 1.0 } else { 1.0 - (rank as f64).ln() / (n as f64).ln() }
}

/// The rank of a query's positive among the batch's items: 1 + the items that are not positives
/// of this query and score at least as high as its best positive. Ties count against the
/// positive, so an embedding that scores every item alike earns rank N (reward 0) rather than 1.
pub fn rank_of_positive(scores: &[f32], positive: &[bool]) -> usize {
    assert_eq!(scores.len(), positive.len());
    let best = scores.iter().zip(positive).filter(|(_, p)| **p).map(|(s, _)| *s).fold(f32::NEG_INFINITY, f32::max);
    assert!(best > f32::NEG_INFINITY, "a query with no positive in its batch");
    1 + scores.iter().zip(positive).filter(|(s, p)| !**p && **s >= best).count()
}

/// How a sampled completion ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    /// Tokens before `</think>`; when it never came, every token but the `<emb>` or end-of-turn
    /// token that stopped the sample.
    pub cot_tokens: usize,
    /// `</think>` was written.
    pub closed: bool,
    /// `CoT</think>`, or `CoT</think><emb>`: nothing else after `</think>`, no `<emb>` before.
    pub well_formed: bool,
}

/// How a sampled completion ends, given the ids of `</think>` and `<emb>` and the end-of-turn
/// ids.
pub fn parse_completion(ids: &[u32], end_think: u32, emb: u32, stop_ids: &[u32]) -> Ending {
    match ids.iter().position(|&t| t == end_think) {
        Some(at) => Ending {
            cot_tokens: at,
            closed: true,
            well_formed: (ids[at + 1..].is_empty() || ids[at + 1..] == [emb]) && !ids[..at].contains(&emb),
        },
        None => {
            let stopped = ids.last().is_some_and(|t| *t == emb || stop_ids.contains(t));
            Ending { cot_tokens: ids.len() - usize::from(stopped), closed: false, well_formed: false }
        }
    }
}

/// The weighted rewards of a run: each function's score per sample, and their weighted sum.
pub struct Rewards {
    pub funcs: Vec<(Box<dyn Reward>, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Per function (in `funcs` order), one score per sample.
    pub parts: Vec<Vec<f64>>,
    pub total: Vec<f64>,
}

impl Rewards {
    /// The paper's three: format (β1 0.5), length ≤ `budget` (β2 0.2), retrieval (β3 1).
    pub fn lrem(format: f64, length: f64, retrieval: f64, budget: usize) -> Self {
        Self {
            funcs: vec![
                (Box::new(Format), format),
                (Box::new(Length { budget }), length),
                (Box::new(Retrieval), retrieval),
            ],
        }
    }

    pub fn score(&self, samples: &[Sample<'_>]) -> Scored {
        let parts: Vec<Vec<f64>> =
            self.funcs.iter().map(|(f, _)| samples.iter().map(|s| f.score(s)).collect()).collect();
        let total =
            (0..samples.len()).map(|i| self.funcs.iter().zip(&parts).map(|((_, w), p)| w * p[i]).sum()).collect();
        Scored { parts, total }
    }
}
