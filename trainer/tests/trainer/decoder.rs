//! The decoder on a tiny random config: the KV cache, left padding and continuous batching give
//! the same numbers as a plain full forward pass.

use burn::tensor::backend::Backend;
use lrem_trainer::model::decoder::{Decoder, DecoderConfig};
use lrem_trainer::model::kv_cache::KvCache;
use lrem_trainer::model::layers::host;
use lrem_trainer::model::weights::RandomWeights;

// CUDA when built with `--features cuda` (the GPU check runs these), the CPU backend otherwise.
type B = lrem_trainer::backend::Inference;

fn tiny<Bk: Backend>(seed: u64) -> Decoder<Bk> {
    Decoder::load(&DecoderConfig::tiny(50), &mut RandomWeights::new(seed), &Default::default()).unwrap()
}

fn logits_all<Bk: Backend>(model: &Decoder<Bk>, ids: &[Vec<u32>], valid: &[Vec<bool>]) -> Vec<f32> {
    host(model.logits(model.forward(ids, valid, None)))
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst <= tol, "max |diff| {worst} > {tol}");
}

#[test]
fn kv_cache_steps_equal_full_recompute() {
    let model = tiny::<B>(1);
    let seq: Vec<u32> = vec![3, 17, 5, 42, 8, 8, 1, 30, 12, 7];
    let full = logits_all(&model, &[seq.clone()], &[vec![true; seq.len()]]);
    let vocab = 50;
    let mut cache = KvCache::default();
    // A 4-token prefill, then one token at a time.
    let h = model.forward(&[seq[..4].to_vec()], &[vec![true; 4]], Some(&mut cache));
    close(&host(model.logits(h)), &full[..4 * vocab], 1e-4);
    for t in 4..seq.len() {
        let h = model.forward(&[vec![seq[t]]], &[vec![true]], Some(&mut cache));
        close(&host(model.logits(h)), &full[t * vocab..(t + 1) * vocab], 1e-4);
    }
    assert_eq!(cache.tokens(0), seq.len());
}

#[test]
fn left_padded_batch_equals_each_sequence_alone() {
    let model = tiny::<B>(2);
    let a: Vec<u32> = vec![4, 9, 13, 2, 40, 41];
    let b: Vec<u32> = vec![7, 3];
    let vocab = 50;
    let alone_a = logits_all(&model, &[a.clone()], &[vec![true; 6]]);
    let alone_b = logits_all(&model, &[b.clone()], &[vec![true; 2]]);
    let padded_b = vec![0, 0, 0, 0, 7, 3];
    let valid_b = vec![false, false, false, false, true, true];
    let batch = logits_all(&model, &[a.clone(), padded_b], &[vec![true; 6], valid_b]);
    close(&batch[..6 * vocab], &alone_a, 1e-4);
    close(&batch[(6 + 4) * vocab..12 * vocab], &alone_b, 1e-4);

    // Decoding on from the padded batch: each row's next logits equal its own cached run.
    let mut cache = KvCache::default();
    model.forward(
        &[a.clone(), vec![0, 0, 0, 0, 7, 3]],
        &[vec![true; 6], vec![false, false, false, false, true, true]],
        Some(&mut cache),
    );
    let step = host(model.logits(model.forward(&[vec![11], vec![11]], &[vec![true], vec![true]], Some(&mut cache))));
    let mut a_next = a.clone();
    a_next.push(11);
    let mut b_next = b.clone();
    b_next.push(11);
    close(&step[..vocab], &logits_all(&model, &[a_next], &[vec![true; 7]])[6 * vocab..], 1e-4);
    close(&step[vocab..], &logits_all(&model, &[b_next], &[vec![true; 3]])[2 * vocab..], 1e-4);
}
