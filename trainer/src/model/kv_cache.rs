//! The decoder's key/value cache, kept on the host and written in place.
//!
//! Each sequence keeps only its real tokens, token-major (`[len][kv_heads][head_dim]` per layer),
//! so a decode step appends one token's keys and values to a `Vec` and attends over the rest
//! where they lie. A tensor cache grown with `cat` copies the whole cache every step, and its
//! batched products over a few rows each cost more in dispatch than in arithmetic; left padding
//! and sequences that left the batch also needed padding slots and masks, which per-sequence
//! storage does not have.

use rayon::prelude::*;

/// The keys and values of earlier tokens, per running sequence.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    rows: Vec<CachedSequence>,
    /// `kv_heads · head_dim`: one token's keys in one layer.
    width: usize,
}

/// Per layer: keys and values, `[tokens][kv_heads][head_dim]` each.
#[derive(Debug, Clone, Default)]
struct CachedSequence {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl CachedSequence {
    fn tokens(&self, layer: usize, width: usize) -> usize {
        self.layers.get(layer).map_or(0, |(k, _)| k.len() / width.max(1))
    }
}

/// One layer's new keys and values and its queries after RoPE, as the attention computes them:
/// `q` `[batch, heads, new, head_dim]`, `k` and `v` `[batch, kv_heads, new, head_dim]`.
pub struct StepTensors<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvCache {
    /// Sequences in the cache (the batch).
    pub fn batch(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        (0..self.rows.len()).all(|r| self.tokens(r) == 0)
    }

    /// Real tokens stored for sequence `row` (in every layer once a step is done): the position
    /// of its next token.
    pub fn tokens(&self, row: usize) -> usize {
        self.rows[row].tokens(0, self.width)
    }

    /// The keys stored for sequence `row` in `layer`, `[tokens][kv_heads][head_dim]`.
    pub fn keys(&self, row: usize, layer: usize) -> &[f32] {
        &self.rows[row].layers[layer].0
    }

    /// Keeps the given rows, in the given order (a row may repeat: `n` samples of one prompt).
    pub fn select(&self, rows: &[usize]) -> Self {
        Self { rows: rows.iter().map(|&r| self.rows[r].clone()).collect(), width: self.width }
    }

    /// Appends another cache's sequences after this one's (a newly admitted batch).
    pub fn extend(&mut self, other: KvCache) {
        self.width = self.width.max(other.width);
        self.rows.extend(other.rows);
    }

    /// Stores `layer`'s keys and values of the new tokens that `valid` marks real, creating the
    /// rows on the first call of an empty cache.
    pub fn store(&mut self, layer: usize, step: &StepTensors, valid: &[Vec<bool>]) {
        let (nkv, hd) = (step.kv_heads, step.head_dim);
        let t_new = valid.first().map_or(0, Vec::len);
        if self.rows.is_empty() {
            self.rows = vec![CachedSequence::default(); valid.len()];
        }
        self.width = nkv * hd;
        assert_eq!(self.rows.len(), valid.len(), "a step's batch must match the cache's");
        for (b, (row, valid)) in self.rows.iter_mut().zip(valid).enumerate() {
            if row.layers.len() <= layer {
                row.layers.resize_with(layer + 1, Default::default);
            }
            let (keys, values) = &mut row.layers[layer];
            for t in (0..t_new).filter(|&t| valid[t]) {
                for h in 0..nkv {
                    let at = ((b * nkv + h) * t_new + t) * hd;
                    keys.extend_from_slice(&step.k[at..at + hd]);
                    values.extend_from_slice(&step.v[at..at + hd]);
                }
            }
        }
    }

    /// Appends `layer`'s new keys and values, then attends each new query to its sequence's
    /// stored tokens up to and including itself. Returns `[batch, new, heads · head_dim]`; a pad
    /// query (one that `valid` marks false) sees only the tokens before it, or gets zeros.
    pub fn attend(&mut self, layer: usize, step: &StepTensors, valid: &[Vec<bool>]) -> Vec<f32> {
        let t_new = valid.first().map_or(0, Vec::len);
        let (nh, nkv, hd) = (step.heads, step.kv_heads, step.head_dim);
        let before: Vec<usize> = self.rows.iter().map(|r| r.tokens(layer, nkv * hd)).collect();
        self.store(layer, step, valid);
        let rep = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        let rows = &self.rows;
        // One task per (sequence, head): a decode step of one sequence still spreads over threads.
        let per_head: Vec<Vec<f32>> = (0..valid.len() * nh)
            .into_par_iter()
            .map(|bh| {
                let (b, h) = (bh / nh, bh % nh);
                let g = h / rep;
                let (keys, values) = &rows[b].layers[layer];
                let mut out = vec![0.0f32; t_new * hd];
                let mut visible = before[b];
                let mut scores = Vec::with_capacity(before[b] + t_new);
                for t in 0..t_new {
                    visible += usize::from(valid[b][t]);
                    if visible == 0 {
                        continue;
                    }
                    let at = ((b * nh + h) * t_new + t) * hd;
                    let q = &step.q[at..at + hd];
                    scores.clear();
                    scores.extend((0..visible).map(|s| dot(q, &keys[(s * nkv + g) * hd..][..hd]) * scale));
                    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut total = 0.0;
                    for x in scores.iter_mut() {
                        *x = (*x - max).exp();
                        total += *x;
                    }
                    let o = &mut out[t * hd..(t + 1) * hd];
                    for (s, &p) in scores.iter().enumerate() {
                        let p = p / total;
                        for (o, &v) in o.iter_mut().zip(&values[(s * nkv + g) * hd..][..hd]) {
                            *o += p * v;
                        }
                    }
                }
                out
            })
            .collect();
        let mut out = vec![0.0f32; valid.len() * t_new * nh * hd];
        for (bh, head) in per_head.iter().enumerate() {
            let (b, h) = (bh / nh, bh % nh);
            for t in 0..t_new {
                out[((b * t_new + t) * nh + h) * hd..][..hd].copy_from_slice(&head[t * hd..(t + 1) * hd]);
            }
        }
        out
    }
}

/// A dot product in eight independent lanes, which the compiler turns into SIMD (a single running
/// sum is a dependency chain it may not reorder).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}
