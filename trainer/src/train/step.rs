//! The gradients of one contrastive batch, plain or through a gradient cache.
//!
//! GradCache (Gao et al. 2021; sentence-transformers' `CachedMultipleNegativesRankingLoss`):
//! in-batch negatives need the whole batch in one loss, but a graph over the whole batch does not
//! fit small memory. So: (1) embed every sequence without a graph, (2) take the InfoNCE gradient
//! with respect to those embeddings, (3) re-run the sequences a chunk at a time with a graph and
//! back-propagate `⟨embedding, cached gradient⟩` plus the chunk's share of the NTP loss. The sum of
//! the chunk gradients equals the full-batch gradient (tested).

use burn::optim::GradientsAccumulator;
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use super::config::LossConfig;
use super::data::Example;
use super::loss::{info_nce, ntp_sum, ntp_targets};
use super::recompute::{chunk_gradients, embed_chunks};
use crate::bail;
use crate::dist::ProcessGroup;
use crate::error::Result;
use crate::format::{last_hidden, last_position};
use crate::model::decoder::Decoder;
use crate::model::layers::{host, tensor};

/// The loss of one batch, split into its parts (values, not graphs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossParts {
    pub infonce: f64,
    /// Mean −log p over the NTP targets (0 when λ1 = 0: not computed).
    pub ntp: f64,
    pub ntp_tokens: usize,
    /// λ1·ntp + λ2·infonce.
    pub total: f64,
    /// Real (unpadded) tokens forwarded with a graph.
    pub tokens: usize,
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    use burn::tensor::ElementConversion;
    t.into_scalar().elem::<f64>()
}

/// How much graph a step holds at once: the memory levers, which change no gradient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// GradCache chunk: sequences run with a graph at a time. 0 (or ≥ the batch) runs the whole
    /// batch with one graph.
    pub chunk: usize,
    /// Gradient checkpointing per decoder layer ([`super::recompute`]): a graph over one block
    /// at a time. Runs through the gradient cache, with one chunk when `chunk` is 0.
    pub recompute: bool,
}

/// GradCache chunks of that many sequences, no recomputation.
impl From<usize> for Memory {
    fn from(chunk: usize) -> Self {
        Self { chunk, recompute: false }
    }
}

/// Gradients of `scale · (λ1·NTP + λ2·InfoNCE)` over `batch`, holding as much graph at once as
/// `memory` says (a `usize` is a GradCache chunk).
pub fn batch_gradients<B: AutodiffBackend>(
    model: &Decoder<B>,
    batch: &[&Example],
    loss: &LossConfig,
    memory: impl Into<Memory>,
    scale: f64,
) -> (GradientsParams, LossParts) {
    shard_gradients(model, batch, loss, memory, scale, &ProcessGroup::single())
        .expect("a single process has no peer to fail")
}

/// [`batch_gradients`] for this rank's share of a batch every rank of `group` holds whole: its
/// examples are forwarded here, and InfoNCE runs over every rank's embeddings (gathered, as
/// sentence-transformers' `gather_across_devices` does), so the gradients summed over the ranks
/// equal one process's on the whole batch. [`LossParts::ntp`] and `tokens` are this rank's
/// shares (they add across ranks); `infonce` is the whole batch's; so `total` means something
/// only once the NTP shares are summed (the step loop recomputes it then).
pub fn shard_gradients<B: AutodiffBackend>(
    model: &Decoder<B>,
    batch: &[&Example],
    loss: &LossConfig,
    memory: impl Into<Memory>,
    scale: f64,
    group: &ProcessGroup,
) -> Result<(GradientsParams, LossParts)> {
    let Memory { chunk, recompute } = memory.into();
    let groups: Vec<u64> = batch.iter().map(|e| e.query_id).collect();
    let range = group.share(batch.len());
    let mine = &batch[range.clone()];
    let queries: Vec<&[u32]> = mine.iter().map(|e| e.query.ids.as_slice()).collect();
    let items: Vec<&[u32]> = mine.iter().map(|e| e.item.as_slice()).collect();
    let with_ntp = loss.ntp_weight > 0.0;
    // Over the whole batch: NTP is a mean over every rank's targets.
    let ntp_tokens: usize = batch.iter().map(|e| e.query.targets().len()).sum();
    let tokens = queries.iter().chain(&items).map(|s| s.len()).sum();
    let ntp_scale = loss.ntp_weight * scale / ntp_tokens.max(1) as f64;
    let ntp_of = |model: &Decoder<B>, hidden, examples: &[&Example]| {
        let seqs: Vec<(&[u32], std::ops::Range<usize>)> =
            examples.iter().map(|e| (e.query.ids.as_slice(), e.query.targets())).collect();
        let (rows, ids) = ntp_targets(&seqs);
        ntp_sum(model, hidden, rows, ids)
    };
    let mut parts = LossParts { ntp_tokens, tokens, ..Default::default() };
    let device = model.embed.lazy_device();
    let width = model.embed.lazy_shape().dims::<2>()[0];

    // A share with no rows has nothing to save or recompute: it only joins the gathers.
    if mine.is_empty() || (!recompute && (chunk == 0 || chunk >= mine.len())) {
        let local = (!mine.is_empty()).then(|| (last_hidden(model, &queries), last_hidden(model, &items).0));
        let (q_local, hq, d_local) = match local {
            Some(((q, hq), d)) => (Some(q), Some(hq), Some(d)),
            None => (None, None, None),
        };
        let q = gather(group, q_local, batch.len(), width, &device)?;
        let d = gather(group, d_local, batch.len(), width, &device)?;
        let nce = info_nce(q, d, &groups, loss.temperature, loss.symmetric);
        parts.infonce = scalar(nce.clone());
        let Some(hq) = hq else {
            // No rows here (a short last batch over many ranks): nothing to differentiate.
            return Ok((GradientsParams::new(), finish(parts, loss)));
        };
        let mut total = nce.mul_scalar(loss.infonce_weight * scale);
        if with_ntp {
            let ntp = ntp_of(model, hq, mine);
            parts.ntp = scalar(ntp.clone()) / ntp_tokens.max(1) as f64;
            total = total + ntp.mul_scalar(ntp_scale);
        }
        let grads = GradientsParams::from_grads(total.backward(), model);
        return Ok((grads, finish(parts, loss)));
    }

    // (1) Embeddings without a graph, every rank's; with recompute, each block's output too.
    let chunk = if chunk == 0 { mine.len() } else { chunk };
    let mut saved = Vec::new();
    let q_all =
        gather(group, Some(embed_chunks(model, &queries, chunk, recompute, &mut saved)), batch.len(), width, &device)?;
    let d_all =
        gather(group, Some(embed_chunks(model, &items, chunk, recompute, &mut saved)), batch.len(), width, &device)?;
    let q_cache = Tensor::<B, 2>::from_inner(q_all).require_grad();
    let d_cache = Tensor::<B, 2>::from_inner(d_all).require_grad();
    // (2) The InfoNCE gradient with respect to them.
    let nce = info_nce(q_cache.clone(), d_cache.clone(), &groups, loss.temperature, loss.symmetric);
    parts.infonce = scalar(nce.clone());
    let cached = nce.mul_scalar(loss.infonce_weight * scale).backward();
    let q_grad = q_cache.grad(&cached).expect("query embeddings take part in the loss");
    let d_grad = d_cache.grad(&cached).expect("item embeddings take part in the loss");
    // (3) This rank's chunks with a graph, each back-propagating its embeddings' cached gradient.
    let mut saved = saved.into_iter();
    let mut acc = GradientsAccumulator::<Decoder<B>>::new();
    let mut ntp_total = 0.0;
    for (c, examples) in mine.chunks(chunk).enumerate() {
        let seqs: Vec<&[u32]> = examples.iter().map(|e| e.query.ids.as_slice()).collect();
        let g = Tensor::<B, 2>::from_inner(q_grad.clone().narrow(0, range.start + c * chunk, examples.len()));
        let grads = chunk_gradients(model, &seqs, saved.next().expect(SAVED), |hq| {
            let surrogate = last_position(hq.clone()).mul(g).sum();
            if !with_ntp {
                return surrogate;
            }
            let ntp = ntp_of(model, hq, examples);
            ntp_total += scalar(ntp.clone());
            surrogate + ntp.mul_scalar(ntp_scale)
        });
        acc.accumulate(model, grads);
    }
    for (c, seqs) in items.chunks(chunk).enumerate() {
        let g = Tensor::<B, 2>::from_inner(d_grad.clone().narrow(0, range.start + c * chunk, seqs.len()));
        let grads = chunk_gradients(model, seqs, saved.next().expect(SAVED), |hd| last_position(hd).mul(g).sum());
        acc.accumulate(model, grads);
    }
    assert!(saved.next().is_none(), "{SAVED}");
    parts.ntp = ntp_total / ntp_tokens.max(1) as f64;
    Ok((acc.grads(), finish(parts, loss)))
}

/// Phase 1 keeps one entry per chunk (block outputs, or none), queries' chunks then items'.
const SAVED: &str = "one saved entry per chunk, in the order the chunks re-run";

fn finish(mut parts: LossParts, loss: &LossConfig) -> LossParts {
    parts.total = loss.ntp_weight * parts.ntp + loss.infonce_weight * parts.infonce;
    parts
}

/// The whole batch's `[n, width]` rows from every rank's share, this rank's `local` rows in place
/// (with their graph, if any) and the other ranks' as constants. A single process returns
/// `local` itself.
fn gather<B: Backend>(
    group: &ProcessGroup,
    local: Option<Tensor<B, 2>>,
    n: usize,
    width: usize,
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    if group.world() == 1 {
        return Ok(local.expect("a single process holds the whole batch"));
    }
    let mine = local.as_ref().map_or_else(Vec::new, |t| host(t.clone()));
    let all = group.all_gather(&mine)?;
    for (rank, values) in all.iter().enumerate() {
        let rows = group.share_of(rank, n).len();
        if values.len() != rows * width {
            bail!(
                "rank {rank} sent {} embedding values for its {rows} rows of width {width}: the ranks load different models",
                values.len()
            );
        }
    }
    let rows = |values: Vec<f32>| {
        let r = values.len() / width;
        (r > 0).then(|| tensor::<B, 2>(values, [r, width], device))
    };
    let before = rows(all[..group.rank()].concat());
    let after = rows(all[group.rank() + 1..].concat());
    Ok(Tensor::cat([before, local, after].into_iter().flatten().collect(), 0))
}
