//! Ranking metrics over an exact top-K, with graded relevance (NDCG gain 2^grade − 1).

use std::collections::HashMap;

/// Metrics of one query at one cut-off `k`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct AtK {
    pub hit: f64,
    pub recall: f64,
    pub ndcg: f64,
}

/// `ranking`: item ids best first (at least `k` of them, or the whole catalogue); `relevant`:
/// item id → grade (> 0).
pub fn at_k(ranking: &[i64], relevant: &HashMap<i64, i32>, k: usize) -> AtK {
    if relevant.is_empty() {
        return AtK::default();
    }
    let top = &ranking[..k.min(ranking.len())];
    let found = top.iter().filter(|i| relevant.contains_key(i)).count();
    let gain = |g: i32| 2f64.powi(g) - 1.0;
    let dcg: f64 =
        top.iter().enumerate().filter_map(|(r, i)| relevant.get(i).map(|&g| gain(g) / ((r + 2) as f64).log2())).sum();
    let mut grades: Vec<i32> = relevant.values().copied().collect();
    grades.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = grades.iter().take(top.len()).enumerate().map(|(r, &g)| gain(g) / ((r + 2) as f64).log2()).sum();
    AtK {
        hit: if found > 0 { 1.0 } else { 0.0 },
        recall: found as f64 / relevant.len() as f64,
        ndcg: if idcg > 0.0 { dcg / idcg } else { 0.0 },
    }
}

/// Reciprocal rank of the first relevant item over the whole ranking (0 when none is ranked).
pub fn reciprocal_rank(ranking: &[i64], relevant: &HashMap<i64, i32>) -> f64 {
    ranking.iter().position(|i| relevant.contains_key(i)).map_or(0.0, |r| 1.0 / (r + 1) as f64)
}

/// Item ids of `catalogue` ordered by cosine with `query` (all vectors unit length), best first;
/// ties broken by catalogue order.
pub fn rank(query: &[f32], catalogue: &[(i64, Vec<f32>)]) -> Vec<i64> {
    let mut scored: Vec<(f32, usize)> = catalogue
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| catalogue[i].0).collect()
}

/// A mean over queries with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

/// Bootstrap resamples behind every interval of the report.
pub const RESAMPLES: usize = 1000;

/// The mean of per-query `values` and its 95% percentile-bootstrap interval: `resamples` draws
/// of as many queries with replacement (seeded, so a report is reproducible).
pub fn estimate(values: &[f64], resamples: usize, seed: u64) -> Estimate {
    use rand::{Rng, SeedableRng};
    let n = values.len();
    if n == 0 {
        return Estimate { mean: 0.0, low: 0.0, high: 0.0 };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * resamples as f64) as usize).min(resamples - 1)];
    Estimate { mean, low: at(0.025), high: at(0.975) }
}
