//! Gradient checkpointing per decoder layer: a graph over one block at a time instead of the
//! whole model.
//!
//! A pass without a graph keeps only the residual stream between blocks (each block's output,
//! `[batch, t, hidden]`). The backward then runs from the top down, one block at a time: block
//! `l` is re-run with a graph from its saved input (a fresh leaf), and back-propagates
//! `⟨output, ∂loss/∂output⟩`, which yields its parameters' gradients and `∂loss/∂input` for the
//! block below. The sum over blocks equals the whole graph's gradients (tested).
//!
//! This is PyTorch's `checkpoint` per layer done by hand: Burn 0.21's own checkpointing is a
//! backend type parameter that recomputes memory-bound operations, not chosen layers. Its cost is
//! one forward pass more than a plain step, which the gradient cache has already paid: the cache's
//! embedding pass is the pass that saves the block outputs, so checkpointing adds no compute to
//! a cached step (a step whose whole share is one chunk pays the extra forward). Memory: the
//! saved outputs (`layers · tokens · hidden` floats, about 1/40 of what a graph holds per token
//! at the Qwen2.5-3B shape) plus one block's graph over one chunk.

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::format::{last_position, left_pad};
use crate::model::decoder::Decoder;

/// Each block's output for `seqs` (left-padded together), from a pass without a graph.
pub type BlockOutputs<B> = Vec<Tensor<B, 3>>;

/// `seqs`' `<emb>` states (the last position's hidden state) from a pass without a graph, and,
/// when `keep` is set, each block's output for [`chunk_gradients`] to start from.
pub fn embed_graph_free<B: Backend>(
    model: &Decoder<B>,
    seqs: &[&[u32]],
    keep: bool,
) -> (Tensor<B, 2>, Option<BlockOutputs<B>>) {
    let (ids, valid) = left_pad(seqs);
    let mut outputs = Vec::new();
    let mut probe = |_: usize, x: &Tensor<B, 3>| {
        if keep {
            outputs.push(x.clone());
        }
    };
    let hidden = model.forward_probed(&ids, &valid, None, &mut probe);
    (last_position(hidden), keep.then_some(outputs))
}

/// The gradients of `top(hidden)`, where `hidden` is the model's final (normalised) hidden state
/// for `seqs`: through one graph over the whole model, or, given the block outputs of a
/// graph-free pass over the same `seqs`, one block at a time.
pub fn chunk_gradients<B: AutodiffBackend>(
    model: &Decoder<B>,
    seqs: &[&[u32]],
    saved: Option<BlockOutputs<B::InnerBackend>>,
    top: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 1>,
) -> GradientsParams {
    let (ids, valid) = left_pad(seqs);
    let Some(outputs) = saved else {
        let hidden = model.forward(&ids, &valid, None);
        return GradientsParams::from_grads(top(hidden).backward(), model);
    };
    assert_eq!(outputs.len(), model.blocks.len(), "one saved output per block");
    let mut outputs = outputs;
    let leaf = |x: Tensor<B::InnerBackend, 3>| Tensor::<B, 3>::from_inner(x).require_grad();
    let mut acc = GradientsAccumulator::<Decoder<B>>::new();
    let last = leaf(outputs.pop().expect("a decoder has blocks"));
    let grads = top(model.norm.forward(last.clone())).backward();
    let mut upstream = last.grad(&grads).expect("the loss depends on the last block's output");
    acc.accumulate(model, GradientsParams::from_grads(grads, model));
    let pass = model.full_pass(&valid);
    // Each saved output is let go once its block has been re-run.
    for layer in (0..model.blocks.len()).rev() {
        // Block 0 starts from the embeddings, whose lookup is differentiated along with it.
        let input = match outputs.pop() {
            Some(saved) => leaf(saved),
            None => model.embed_tokens(&ids),
        };
        let output = model.block_forward(layer, input.clone(), &pass);
        let grads = output.mul(Tensor::from_inner(upstream.clone())).sum().backward();
        if layer > 0 {
            upstream = input.grad(&grads).expect("a block's output depends on its input");
        }
        acc.accumulate(model, GradientsParams::from_grads(grads, model));
    }
    acc.grads()
}

/// The `<emb>` states of `seqs` without a graph, a chunk of `chunk` sequences at a time, with
/// each chunk's block outputs when `keep` is set (appended to `saved`, one entry per chunk).
pub fn embed_chunks<B: AutodiffBackend>(
    model: &Decoder<B>,
    seqs: &[&[u32]],
    chunk: usize,
    keep: bool,
    saved: &mut Vec<Option<BlockOutputs<B::InnerBackend>>>,
) -> Tensor<B::InnerBackend, 2> {
    let frozen = model.valid();
    let mut states = Vec::new();
    for c in seqs.chunks(chunk) {
        let (emb, outputs) = embed_graph_free(&frozen, c, keep);
        states.push(emb);
        saved.push(outputs);
    }
    Tensor::cat(states, 0)
}
