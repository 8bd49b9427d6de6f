//! Exact top-K vector search: blocked matrix products (`matrixmultiply` sgemm) of query chunks
//! against item blocks, one query chunk per rayon task, keeping a running top-K per query.
//!
//! Vectors are L2-normalised on insertion, so the inner product is the cosine similarity.
//! [`HnswIndex`] is the approximate alternative for large catalogues (`instant-distance`'s HNSW),
//! built from the same vectors; a test reports its recall against the exact index.

use rayon::prelude::*;

/// Items per sgemm block: 4096 × 384 floats = 6 MiB, about what stays in L2/L3.
const ITEM_BLOCK: usize = 4096;
/// Queries per rayon task.
const QUERY_CHUNK: usize = 64;

pub struct ExactIndex {
    dim: usize,
    ids: Vec<i64>,
    /// Row-major, `ids.len() × dim`, each row unit-length.
    vectors: Vec<f32>,
}

/// One hit: item id and cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub item_id: i64,
    pub score: f32,
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

impl ExactIndex {
    pub fn new(dim: usize) -> Self {
        Self { dim, ids: Vec::new(), vectors: Vec::new() }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn add(&mut self, id: i64, vector: &[f32]) -> Result<(), String> {
        if vector.len() != self.dim {
            return Err(format!("item {id}: embedding has {} dimensions, the index has {}", vector.len(), self.dim));
        }
        let start = self.vectors.len();
        self.vectors.extend_from_slice(vector);
        normalize(&mut self.vectors[start..]);
        self.ids.push(id);
        Ok(())
    }

    /// Top `k` items for each query (best first; ties by smaller item id).
    pub fn search(&self, queries: &[Vec<f32>], k: usize) -> Vec<Vec<Hit>> {
        let k = k.min(self.len());
        queries.par_chunks(QUERY_CHUNK).flat_map_iter(|chunk| self.search_chunk(chunk, k)).collect()
    }

    fn search_chunk(&self, queries: &[Vec<f32>], k: usize) -> Vec<Vec<Hit>> {
        let (q, d) = (queries.len(), self.dim);
        let mut a = Vec::with_capacity(q * d);
        for v in queries {
            let start = a.len();
            a.extend(v.iter().copied().chain(std::iter::repeat(0.0)).take(d));
            normalize(&mut a[start..]);
        }
        let mut best: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(2 * k + ITEM_BLOCK); q];
        let mut scores = vec![0f32; q * ITEM_BLOCK];
        for block_start in (0..self.len()).step_by(ITEM_BLOCK) {
            let n = ITEM_BLOCK.min(self.len() - block_start);
            let b = &self.vectors[block_start * d..(block_start + n) * d];
            // scores (q × n) = a (q × d) · bᵀ (d × n); b is row-major n × d, so bᵀ has strides (1, d).
            unsafe {
                matrixmultiply::sgemm(
                    q,
                    d,
                    n,
                    1.0,
                    a.as_ptr(),
                    d as isize,
                    1,
                    b.as_ptr(),
                    1,
                    d as isize,
                    0.0,
                    scores.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            for (qi, top) in best.iter_mut().enumerate() {
                top.extend(
                    scores[qi * n..(qi + 1) * n].iter().enumerate().map(|(j, &s)| (s, (block_start + j) as u32)),
                );
                self.keep_best(top, k);
            }
        }
        best.into_iter()
            .map(|mut top| {
                top.sort_by(|x, y| self.order(x, y));
                top.truncate(k);
                top.into_iter().map(|(score, i)| Hit { item_id: self.ids[i as usize], score }).collect()
            })
            .collect()
    }

    fn order(&self, x: &(f32, u32), y: &(f32, u32)) -> std::cmp::Ordering {
        y.0.total_cmp(&x.0).then(self.ids[x.1 as usize].cmp(&self.ids[y.1 as usize]))
    }

    fn keep_best(&self, top: &mut Vec<(f32, u32)>, k: usize) {
        if top.len() > k && k > 0 {
            top.select_nth_unstable_by(k - 1, |x, y| self.order(x, y));
            top.truncate(k);
        } else if k == 0 {
            top.clear();
        }
    }
}

/// Cosine distance between unit vectors, as HNSW's metric.
#[derive(Clone)]
struct Unit(Vec<f32>);

impl instant_distance::Point for Unit {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum::<f32>()
    }
}

/// Approximate top-K (HNSW graph over the items' unit vectors).
pub struct HnswIndex {
    map: instant_distance::HnswMap<Unit, i64>,
    dim: usize,
    ef_search: usize,
}

impl HnswIndex {
    pub fn build(exact: &ExactIndex, ef_search: usize) -> Self {
        let points: Vec<Unit> = exact.vectors.chunks(exact.dim.max(1)).map(|v| Unit(v.to_vec())).collect();
        let map = instant_distance::Builder::default().ef_search(ef_search).seed(0).build(points, exact.ids.clone());
        Self { map, dim: exact.dim, ef_search }
    }

    pub fn search(&self, queries: &[Vec<f32>], k: usize) -> Vec<Vec<Hit>> {
        queries
            .par_iter()
            .map(|q| {
                let mut v: Vec<f32> = q.iter().copied().chain(std::iter::repeat(0.0)).take(self.dim).collect();
                normalize(&mut v);
                let mut search = instant_distance::Search::default();
                let mut hits: Vec<Hit> = self
                    .map
                    .search(&Unit(v), &mut search)
                    .take(k.min(self.ef_search))
                    .map(|item| Hit { item_id: *item.value, score: 1.0 - item.distance })
                    .collect();
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.item_id.cmp(&b.item_id)));
                hits
            })
            .collect()
    }
}

/// The index a retrieval stage searches.
pub enum Index {
    Exact(ExactIndex),
    Hnsw(HnswIndex),
}

impl Index {
    pub fn search(&self, queries: &[Vec<f32>], k: usize) -> Vec<Vec<Hit>> {
        match self {
            Index::Exact(i) => i.search(queries, k),
            Index::Hnsw(i) => i.search(queries, k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn brute_force(index: &ExactIndex, q: &[f32], k: usize) -> Vec<i64> {
        let mut qn = q.to_vec();
        normalize(&mut qn);
        let mut all: Vec<(f32, i64)> = (0..index.len())
            .map(|i| {
                (
                    index.vectors[i * index.dim..(i + 1) * index.dim].iter().zip(&qn).map(|(a, b)| a * b).sum(),
                    index.ids[i],
                )
            })
            .collect();
        all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        all.into_iter().take(k).map(|(_, id)| id).collect()
    }

    #[test]
    fn equals_brute_force_across_blocks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let dim = 24;
        let mut index = ExactIndex::new(dim);
        for id in 0..(ITEM_BLOCK as i64 * 2 + 123) {
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            index.add(1000 + id, &v).unwrap();
        }
        let queries: Vec<Vec<f32>> =
            (0..130).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        let hits = index.search(&queries, 10);
        for (q, h) in queries.iter().zip(&hits) {
            assert_eq!(h.iter().map(|x| x.item_id).collect::<Vec<_>>(), brute_force(&index, q, 10));
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
}
