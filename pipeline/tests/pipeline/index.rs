//! Retrieval's vector search: the exact index against brute force, and HNSW's recall against it.

use lrem_pipeline::index::{ExactIndex, HnswIndex, ITEM_BLOCK, normalize};
use rand::{Rng, SeedableRng};

/// The top `k` of `items` (id, unit vector) by inner product with `q`, ties by id.
fn brute_force(items: &[(i64, Vec<f32>)], q: &[f32], k: usize) -> Vec<i64> {
    let mut qn = q.to_vec();
    normalize(&mut qn);
    let mut all: Vec<(f32, i64)> =
        items.iter().map(|(id, v)| (v.iter().zip(&qn).map(|(a, b)| a * b).sum(), *id)).collect();
    all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

#[test]
fn equals_brute_force_across_blocks() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let dim = 24;
    let mut index = ExactIndex::new(dim);
    let items: Vec<(i64, Vec<f32>)> = (0..(ITEM_BLOCK as i64 * 2 + 123))
        .map(|id| (1000 + id, (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()))
        .collect();
    for (id, v) in &items {
        index.add(*id, v).unwrap();
    }
    // Normalised once here, as the index stores them.
    let items: Vec<(i64, Vec<f32>)> = items
        .into_iter()
        .map(|(id, mut v)| {
            normalize(&mut v);
            (id, v)
        })
        .collect();
    let queries: Vec<Vec<f32>> = (0..130).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let hits = index.search(&queries, 10);
    for (q, h) in queries.iter().zip(&hits) {
        assert_eq!(h.iter().map(|x| x.item_id).collect::<Vec<_>>(), brute_force(&items, q, 10));
        assert!(h.windows(2).all(|w| w[0].score >= w[1].score));
    }
}

#[test]
fn k_larger_than_the_catalogue_returns_everything() {
    let mut index = ExactIndex::new(2);
    index.add(1, &[1.0, 0.0]).unwrap();
    index.add(2, &[0.0, 1.0]).unwrap();
    let hits = index.search(&[vec![1.0, 0.1]], 100);
    assert_eq!(hits[0].iter().map(|h| h.item_id).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn wrong_dimension_names_the_item() {
    let mut index = ExactIndex::new(3);
    assert_eq!(index.add(9, &[1.0]).unwrap_err(), "item 9: embedding has 1 dimensions, the index has 3");
}

#[test]
fn hnsw_recall_against_exact() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (dim, n, k) = (32, 4000, 10);
    // Clustered vectors, as embeddings of a catalogue are.
    let centres: Vec<Vec<f32>> = (0..60).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
    let mut exact = ExactIndex::new(dim);
    for id in 0..n {
        let c = &centres[id % centres.len()];
        let v: Vec<f32> = c.iter().map(|x| x + rng.random_range(-0.35..0.35)).collect();
        exact.add(id as i64, &v).unwrap();
    }
    let queries: Vec<Vec<f32>> = (0..200)
        .map(|i| centres[i % centres.len()].iter().map(|x| x + rng.random_range(-0.35..0.35)).collect())
        .collect();
    let hnsw = HnswIndex::build(&exact, 128);
    let (truth, approx) = (exact.search(&queries, k), hnsw.search(&queries, k));
    let found: usize = truth
        .iter()
        .zip(&approx)
        .map(|(t, a)| t.iter().filter(|h| a.iter().any(|x| x.item_id == h.item_id)).count())
        .sum();
    let recall = found as f64 / (queries.len() * k) as f64;
    eprintln!("HNSW recall@{k} vs exact: {recall:.3} ({n} items, {dim} dims, ef_search 128)");
    assert!(recall >= 0.95, "recall@{k} = {recall}");
}
