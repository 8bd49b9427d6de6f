//! The two losses: InfoNCE over L2-normalised `<emb>` states with in-batch negatives, and
//! next-token prediction over the query side's CoT and closing tokens.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::decoder::Decoder;
use crate::model::layers::tensor;

/// The NTP targets of left-padded sequences: for each target token, its row in the flattened
/// `[batch · t]` hidden states (the position before it) and its id.
pub fn ntp_targets(seqs: &[(&[u32], usize)]) -> (Vec<i64>, Vec<i64>) {
    let t = seqs.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (b, (seq, first)) in seqs.iter().enumerate() {
        let pad = t - seq.len();
        for (j, &id) in seq.iter().enumerate().skip((*first).max(1)) {
            rows.push((b * t + pad + j - 1) as i64);
            ids.push(id as i64);
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
    let device = queries.device();
    let n = groups.len();
    let sim = l2_normalise(queries).matmul(l2_normalise(items).transpose()).div_scalar(temperature);
    let mut mask = vec![0f32; n * n];
    let mut eye = vec![0f32; n * n];
    for i in 0..n {
        eye[i * n + i] = 1.0;
        for j in 0..n {
            if i != j && groups[i] == groups[j] {
                mask[i * n + j] = -1e30;
            }
        }
    }
    let mask = tensor::<B, 2>(mask, [n, n], &device);
    let eye = tensor::<B, 2>(eye, [n, n], &device);
    let sim = sim + mask;
    let forward = log_softmax(sim.clone(), 1).mul(eye.clone()).sum().neg().div_scalar(n as f64);
    if !symmetric {
        return forward;
    }
    let backward = log_softmax(sim.transpose(), 1).mul(eye).sum().neg().div_scalar(n as f64);
    (forward + backward).div_scalar(2.0)
}
