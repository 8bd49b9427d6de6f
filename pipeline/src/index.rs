//! Exact top-K vector search: blocked matrix products (`matrixmultiply` sgemm) of query chunks
//! against item blocks, one query chunk per rayon task, keeping a running top-K per query.
//!
//! Vectors are L2-normalised on insertion, so the inner product is the cosine similarity.
//! [`HnswIndex`] is the approximate alternative for large catalogues (`instant-distance`'s HNSW),
//! built from the same vectors; a test reports its recall against the exact index.

use rayon::prelude::*;

/// Items per sgemm block: 4096 × 384 floats = 6 MiB, about what stays in L2/L3.
pub const ITEM_BLOCK: usize = 4096;
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
