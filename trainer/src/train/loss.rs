//! The two losses: InfoNCE over L2-normalised `<emb>` states with in-batch negatives, and
//! next-token prediction over the query side's CoT and its closing `</think>`.

use std::ops::Range;

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::decoder::Decoder;
use crate::model::layers::tensor;

/// The NTP targets of left-padded sequences, each with the positions it trains (a range that
/// starts at 1 or later): for each target token, its row in the flattened `[batch · t]` hidden
/// states (the position before it) and its id.
pub fn ntp_targets(seqs: &[(&[u32], Range<usize>)]) -> (Vec<i64>, Vec<i64>) {
    let t = seqs.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (b, (seq, targets)) in seqs.iter().enumerate() {
        let pad = t - seq.len();
        for j in targets.clone() {
            rows.push((b * t + pad + j - 1) as i64);
            ids.push(seq[j] as i64);
        }
    }
    (rows, ids)
}

/// Sum over targets of −log p(target), from hidden states `[batch, t, hidden]`. Only the target
/// rows go through the LM head, not every position.
pub fn ntp_sum<B: Backend>(model: &Decoder<B>, hidden: Tensor<B, 3>, rows: Vec<i64>, ids: Vec<i64>) -> Tensor<B, 1> {
    let device = hidden.device();
    let [b, t, h] = hidden.dims();
    let n = rows.len();
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [n]), &device);
    let picked = hidden.reshape([b * t, h]).select(0, rows);
    let logits = model.logits(picked.reshape([1, n, h]));
    let vocab = logits.dims()[2];
    let logp = log_softmax(logits.reshape([n, vocab]), 1);
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n, 1]), &device);
    logp.gather(1, ids).sum().neg()
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalise<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).add_scalar(1e-12).sqrt();
    x.div(norm)
}

/// InfoNCE of queries `[n, h]` against their items `[n, h]` (row i is the positive of query i,
/// every other row a negative), over cos/τ. `groups[i]` names the query of row i: another row of
/// the same query is a positive of it too, so it is masked out rather than counted a negative.
pub fn info_nce<B: Backend>(
    queries: Tensor<B, 2>,
    items: Tensor<B, 2>,
    groups: &[u64],
    temperature: f64,
    symmetric: bool,
) -> Tensor<B, 1> {
    let n = groups.len();
    let positive: Vec<usize> = (0..n).collect();
    let (sim, onehot) = masked_scores(queries, items, &positive, |i, j| groups[i] == groups[j], temperature);
    let forward = log_softmax(sim.clone(), 1).mul(onehot.clone()).sum().neg().div_scalar(n as f64);
    if !symmetric {
        return forward;
    }
    let backward = log_softmax(sim.transpose(), 1).mul(onehot).sum().neg().div_scalar(n as f64);
    (forward + backward).div_scalar(2.0)
}

/// InfoNCE of queries `[n, h]` against distinct items `[m, h]`: `positive[i]` is the column
/// of query i's item, and every other item is a negative once, however many queries share it
/// (GRPO's G samples of one query share one item: repeating its row G times would weigh every
/// negative G times). Where `also_positive(i, j)` says item j, not query i's positive, is
/// relevant to query i all the same (an item of the same query, or one another phrasing of the
/// need drew), it is masked out rather than counted a negative.
pub fn info_nce_items_where<B: Backend>(
    queries: Tensor<B, 2>,
    items: Tensor<B, 2>,
    positive: &[usize],
    also_positive: impl Fn(usize, usize) -> bool,
    temperature: f64,
) -> Tensor<B, 1> {
    let n = positive.len();
    let (sim, onehot) = masked_scores(queries, items, positive, also_positive, temperature);
    log_softmax(sim, 1).mul(onehot).sum().neg().div_scalar(n as f64)
}

/// cos/τ of every query against every item, with the items `also_positive` names masked,
/// and the positives as a one-hot `[n, m]`.
fn masked_scores<B: Backend>(
    queries: Tensor<B, 2>,
    items: Tensor<B, 2>,
    positive: &[usize],
    also_positive: impl Fn(usize, usize) -> bool,
    temperature: f64,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let device = queries.device();
    let (n, m) = (positive.len(), items.dims()[0]);
    let sim = l2_normalise(queries).matmul(l2_normalise(items).transpose()).div_scalar(temperature);
    let mut mask = vec![0f32; n * m];
    let mut onehot = vec![0f32; n * m];
    for i in 0..n {
        onehot[i * m + positive[i]] = 1.0;
        for j in 0..m {
            if j != positive[i] && also_positive(i, j) {
                mask[i * m + j] = -1e30;
            }
        }
    }
    let mask = tensor::<B, 2>(mask, [n, m], &device);
    (sim + mask, tensor::<B, 2>(onehot, [n, m], &device))
}
