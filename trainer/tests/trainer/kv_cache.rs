//! The host KV cache of generation.

use lrem_trainer::model::kv_cache::*;

#[test]
fn dot_matches_a_plain_sum() {
    let a: Vec<f32> = (0..67).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..67).map(|i| (i as f32 * 0.11).cos()).collect();
    let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!((dot(&a, &b) - plain).abs() < 1e-5);
}

#[test]
fn pad_tokens_are_not_stored_and_rows_keep_their_own_lengths() {
    let (nkv, hd) = (1, 2);
    let k: Vec<f32> = (0..2 * 3 * hd).map(|x| x as f32).collect();
    let step = StepTensors { q: &k, k: &k, v: &k, heads: 1, kv_heads: nkv, head_dim: hd };
    let mut cache = KvCache::default();
    cache.store(0, &step, &[vec![true; 3], vec![false, false, true]]);
    assert_eq!((cache.tokens(0), cache.tokens(1)), (3, 1));
    // Row 1 kept only its last token's keys.
    assert_eq!(cache.keys(1, 0), vec![10.0, 11.0]);
    let picked = cache.select(&[1, 1, 0]);
    assert_eq!((picked.batch(), picked.tokens(0), picked.tokens(2)), (3, 1, 3));
}
