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
    /// The completion is exactly `CoT</think><emb>`: closed by the model itself, nothing after.
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

/// 1 when the completion is exactly `<think>…</think><emb>`, else 0.
pub struct Format;

impl Reward for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn score(&self, s: &Sample<'_>) -> f64 {
        if s.well_formed { 1.0 } else { 0.0 }
    }
}

/// 1 when the CoT has at most `budget` tokens, else 0.
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

/// How a sampled completion ends, given the ids of `</think>` and `<emb>`.
pub fn parse_completion(ids: &[u32], end_think: u32, emb: u32) -> (usize, bool) {
    match ids.iter().position(|&t| t == end_think) {
        Some(at) => (at, ids.len() == at + 2 && ids[at + 1] == emb && !ids[..at].contains(&emb)),
        None => (ids.len(), false),
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

#[cfg(test)]
mod tests {
    use super::*;

    const END: u32 = 7;
    const EMB: u32 = 8;

    fn sample(cot_tokens: usize, well_formed: bool, rank: usize, items: usize) -> Sample<'static> {
        Sample { query: "q", ids: &[], cot_tokens, well_formed, rank, items }
    }

    #[test]
    fn retrieval_reward_spans_one_to_zero_and_one_item_is_defined() {
        assert_eq!(retrieval_reward(1, 8), 1.0);
        assert_eq!(retrieval_reward(8, 8), 0.0);
        assert!((retrieval_reward(2, 4) - 0.5).abs() < 1e-12);
        assert_eq!(retrieval_reward(1, 1), 1.0);
    }

    #[test]
    fn rank_counts_ties_against_the_positive_and_other_positives_not_at_all() {
        // The positive at 0.5; one negative above, one tied, one below.
        assert_eq!(rank_of_positive(&[0.5, 0.9, 0.5, 0.1], &[true, false, false, false]), 3);
        // Every item alike: rank N.
        assert_eq!(rank_of_positive(&[0.3; 4], &[false, true, false, false]), 4);
        // A second positive above the first is no competitor: the best positive counts.
        assert_eq!(rank_of_positive(&[0.2, 0.9, 0.5], &[true, true, false]), 1);
        assert_eq!(rank_of_positive(&[0.4], &[true]), 1);
    }

    #[test]
    fn completions_parse_into_cot_length_and_form() {
        // Well formed, empty CoT included.
        assert_eq!(parse_completion(&[1, 2, END, EMB], END, EMB), (2, true));
        assert_eq!(parse_completion(&[END, EMB], END, EMB), (0, true));
        // No </think> within the budget: every token is CoT, and the form is wrong.
        assert_eq!(parse_completion(&[1, 2, 3], END, EMB), (3, false));
        // Text after <emb>, <emb> missing, or <emb> inside the CoT.
        assert_eq!(parse_completion(&[1, END, EMB, 4], END, EMB), (1, false));
        assert_eq!(parse_completion(&[1, END], END, EMB), (1, false));
        assert_eq!(parse_completion(&[EMB, 1, END, EMB], END, EMB), (2, false));
    }

    #[test]
    fn weighted_rewards_add_up_per_sample() {
        let rewards = Rewards::lrem(0.5, 0.2, 1.0, 16);
        let samples = [sample(3, true, 1, 4), sample(17, false, 4, 4), sample(16, true, 2, 4)];
        let scored = rewards.score(&samples);
        assert_eq!(scored.parts[0], [1.0, 0.0, 1.0]);
        assert_eq!(scored.parts[1], [1.0, 0.0, 1.0]);
        assert_eq!(scored.parts[2], [1.0, 0.0, 0.5]);
        let want = [1.7, 0.0, 0.5 + 0.2 + 0.5];
        for (got, want) in scored.total.iter().zip(want) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }
}
