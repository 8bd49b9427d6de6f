//! Matrix products over GGUF weights as stored (Q4_0, Q4_1, Q8_0 blocks of 32), the way
//! llama.cpp runs them: each activation row is quantised to 8 bits per block of 32 (a scale and
//! the block's sum, llama.cpp's `q8_1`), and every block product is an integer dot product scaled
//! once. A decode step then reads 0.56–1.06 bytes per weight instead of f32's 4; batch-1 decoding
//! is bound by that traffic.
//!
//! Kernels: AVX2 + FMA chosen at run time, a portable scalar path otherwise (and as the test
//! reference). Each weight row is unpacked once per tile of up to four activation rows, and the
//! output rows are split across rayon's threads.
//!
//! Why hand-written: candle-core 0.10's `k_quants` has no SIMD Q4_1 path, compiles its AVX2 code
//! only under build-time `target-feature`s, and walks one activation row at a time; `ggml`
//! bindings (llama-cpp-sys) build llama.cpp's C++ with CMake, whose native build crashes on this
//! machine's CPU (see DESIGN.md).

use half::f16;
use rayon::prelude::*;

use crate::bail;
use crate::error::Result;

pub const BLOCK: usize = 32;

/// The block formats the kernels multiply. GGUF's Q4_K arrives as Q4_1 blocks (the same values);
/// other types a kernel does not read are requantised to Q8_0 at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantKind {
    /// `d: f16, q: [u8; 16]`, value `d · (nibble − 8)`.
    Q4_0,
    /// `d: f16, m: f16, q: [u8; 16]`, value `d · nibble + m`.
    Q4_1,
    /// `d: f16, q: [i8; 32]`, value `d · q`.
    Q8_0,
}

/// One weight row, as the kernels read it.
#[derive(Clone, Copy)]
struct WeightRow<'a> {
    scales: &'a [f32],
    offsets: &'a [f32],
    values: &'a [u8],
}

impl QuantKind {
    /// The packed values of one block.
    fn value_bytes(self) -> usize {
        if self == QuantKind::Q8_0 { BLOCK } else { BLOCK / 2 }
    }

    pub fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_0 => 18,
            QuantKind::Q4_1 => 20,
            QuantKind::Q8_0 => 34,
        }
    }
}

/// A `[rows, cols]` weight matrix (PyTorch's `[out, in]`) of quantised blocks along `cols`,
/// unpacked at load into what the kernels read: each block's scale and offset as f32 (so no f16
/// conversion in the inner loop) and its packed values. Q4_0 becomes Q4_1 with offset `-8d`.
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    pub kind: QuantKind,
    pub rows: usize,
    pub cols: usize,
    /// `d` of every block, row-major.
    scales: Vec<f32>,
    /// The value of nibble 0 (`m`, or `-8d`) of every 4-bit block; empty for Q8_0.
    offsets: Vec<f32>,
    /// 16 bytes of nibbles or 32 signed bytes per block.
    values: Vec<u8>,
}

/// One block of an activation row: `d · q` approximates the 32 values; `s = d · Σq`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct ActBlock {
    q: [i8; BLOCK],
    d: f32,
    s: f32,
}

impl QuantMatrix {
    /// From blocks as GGUF stores them.
    pub fn new(kind: QuantKind, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self> {
        if cols % BLOCK != 0 {
            bail!("{kind:?} rows of {cols} values are not whole blocks of {BLOCK}");
        }
        let blocks = rows * cols / BLOCK;
        let expected = blocks * kind.block_bytes();
        if data.len() != expected {
            bail!("{kind:?} [{rows}, {cols}]: {} bytes, expected {expected}", data.len());
        }
        let mut me = Self::empty(kind, rows, cols, blocks);
        for block in data.chunks_exact(kind.block_bytes()) {
            let d = f16_at(block, 0);
            me.scales.push(d);
            match kind {
                QuantKind::Q4_0 => me.offsets.push(-8.0 * d),
                QuantKind::Q4_1 => me.offsets.push(f16_at(block, 2)),
                QuantKind::Q8_0 => {}
            }
            me.values.extend_from_slice(&block[block.len() - kind.value_bytes()..]);
        }
        Ok(me)
    }

    /// Q4_K super-blocks of 256 values (8 sub-blocks of 32, each with a 6-bit scale and min
    /// under the super-block's f16 `d` and `dmin`) as 4-bit blocks of 32 with their own scale
    /// and offset: the same values exactly, read by the Q4_1 kernel.
    pub fn from_q4_k(rows: usize, cols: usize, data: &[u8]) -> Result<Self> {
        const SUPER: usize = 256;
        const BYTES: usize = 144;
        if cols % SUPER != 0 || data.len() != rows * cols / SUPER * BYTES {
            bail!("Q4_K [{rows}, {cols}]: {} bytes is not whole super-blocks of {SUPER} values", data.len());
        }
        let blocks = rows * cols / BLOCK;
        let mut me = Self::empty(QuantKind::Q4_1, rows, cols, blocks);
        for sb in data.chunks_exact(BYTES) {
            let (d, dmin, scales, qs) = (f16_at(sb, 0), f16_at(sb, 2), &sb[4..16], &sb[16..]);
            for sub in 0..8 {
                let (sc, m) = q4_k_scale_min(sub, scales);
                me.scales.push(d * sc as f32);
                me.offsets.push(-(dmin * m as f32));
                // Sub-block 2c holds the low nibbles of bytes 32c..32c+32, 2c+1 their high ones.
                let bytes = &qs[sub / 2 * 32..sub / 2 * 32 + 32];
                let nibble = |i: usize| if sub % 2 == 0 { bytes[i] & 0x0F } else { bytes[i] >> 4 };
                me.values.extend((0..16).map(|j| nibble(j) | (nibble(j + 16) << 4)));
            }
        }
        Ok(me)
    }

    /// f32 rows quantised to 8 bits per block of 32 (scale `amax / 127`, kept in f32): for GGUF
    /// types with no kernel of their own (Q5_0, Q5_K, Q6_K, …), which then stay 8-bit in memory
    /// instead of becoming f32.
    pub fn quantize_q8(rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
        if cols % BLOCK != 0 || values.len() != rows * cols {
            bail!("[{rows}, {cols}]: {} values are not whole blocks of {BLOCK}", values.len());
        }
        let mut me = Self::empty(QuantKind::Q8_0, rows, cols, rows * cols / BLOCK);
        for block in quantize_rows(values) {
            me.scales.push(block.d);
            me.values.extend(block.q.iter().map(|&q| q as u8));
        }
        Ok(me)
    }

    fn empty(kind: QuantKind, rows: usize, cols: usize, blocks: usize) -> Self {
        Self {
            kind,
            rows,
            cols,
            scales: Vec::with_capacity(blocks),
            offsets: Vec::with_capacity(if kind == QuantKind::Q8_0 { 0 } else { blocks }),
            values: Vec::with_capacity(blocks * kind.value_bytes()),
        }
    }

    /// Keeps rows in a new order: `order[i]` is the source of row `i`.
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        let per_row = self.cols / BLOCK;
        let pick = |v: &[u8], width: usize| -> Vec<u8> {
            order.iter().flat_map(|&r| &v[r * width..(r + 1) * width]).copied().collect()
        };
        let pick_f32 = |v: &[f32]| -> Vec<f32> {
            if v.is_empty() {
                return Vec::new();
            }
            order.iter().flat_map(|&r| &v[r * per_row..(r + 1) * per_row]).copied().collect()
        };
        Self {
            scales: pick_f32(&self.scales),
            offsets: pick_f32(&self.offsets),
            values: pick(&self.values, per_row * self.kind.value_bytes()),
            ..*self
        }
    }

    /// The rows of several matrices of one kind and width, one after another; `None` when they
    /// differ (a file may mix kinds across layers that share an input).
    pub fn stack(parts: &[&QuantMatrix]) -> Option<Self> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.kind != first.kind || p.cols != first.cols) {
            return None;
        }
        Some(Self {
            rows: parts.iter().map(|p| p.rows).sum(),
            scales: parts.iter().flat_map(|p| &p.scales).copied().collect(),
            offsets: parts.iter().flat_map(|p| &p.offsets).copied().collect(),
            values: parts.iter().flat_map(|p| &p.values).copied().collect(),
            ..**first
        })
    }

    fn row(&self, r: usize) -> WeightRow<'_> {
        let per_row = self.cols / BLOCK;
        let blocks = r * per_row..(r + 1) * per_row;
        let width = self.kind.value_bytes();
        WeightRow {
            scales: &self.scales[blocks.clone()],
            offsets: if self.offsets.is_empty() { &[] } else { &self.offsets[blocks.clone()] },
            values: &self.values[blocks.start * width..blocks.end * width],
        }
    }

    /// The weights as f32, row-major `[rows, cols]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for (b, q) in self.values.chunks_exact(self.kind.value_bytes()).enumerate() {
            let d = self.scales[b];
            match self.kind {
                QuantKind::Q8_0 => out.extend(q.iter().map(|&q| d * (q as i8) as f32)),
                _ => out.extend(nibbles(q).map(|n| d * n as f32 + self.offsets[b])),
            }
        }
        out
    }

    /// `x · Wᵀ` for `x` row-major `[n, cols]`: `[n, rows]`.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        self.matmul_with(x, n, Kernel::detect())
    }

    /// [`Self::matmul`] on a given kernel: the scalar one is the reference the SIMD one is tested
    /// against.
    pub fn matmul_with(&self, x: &[f32], n: usize, kernel: Kernel) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "activations are not [{n}, {}]", self.cols);
        let acts = quantize_rows(x);
        let per_row = self.cols / BLOCK;
        let act_rows: Vec<&[ActBlock]> = acts.chunks_exact(per_row).collect();
        // Each task owns a run of weight rows and writes their outputs for every activation row
        // (`[rows, n]`, transposed back below), so no two tasks touch the same memory.
        const ROWS_PER_TASK: usize = 16;
        let mut out_t = vec![0.0f32; self.rows * n];
        out_t.par_chunks_mut(ROWS_PER_TASK * n).enumerate().for_each(|(task, chunk)| {
            for (i, out) in chunk.chunks_exact_mut(n).enumerate() {
                let w = self.row(task * ROWS_PER_TASK + i);
                for (tile, out) in act_rows.chunks(4).zip(out.chunks_mut(4)) {
                    kernel.dot(self.kind, w, tile, out);
                }
            }
        });
        let mut out = vec![0.0f32; n * self.rows];
        for (r, col) in out_t.chunks_exact(n).enumerate() {
            for (i, &v) in col.iter().enumerate() {
                out[i * self.rows + r] = v;
            }
        }
        out
    }
}

/// The 6-bit scale and min of Q4_K sub-block `j` from the super-block's 12 packed bytes
/// (ggml's `get_scale_min_k4`).
fn q4_k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// The 32 nibbles of a 4-bit block in value order: low nibbles are values 0–15, high 16–31.
fn nibbles(q: &[u8]) -> impl Iterator<Item = u8> + '_ {
    q[..16].iter().map(|b| b & 0x0F).chain(q[..16].iter().map(|b| b >> 4))
}

fn quantize_rows(x: &[f32]) -> Vec<ActBlock> {
    x.chunks_exact(BLOCK)
        .map(|v| {
            let amax = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0i8; BLOCK];
            let mut sum = 0i32;
            for (q, &x) in q.iter_mut().zip(v) {
                *q = (x * inv).round() as i8;
                sum += *q as i32;
            }
            ActBlock { q, d, s: d * sum as f32 }
        })
        .collect()
}

/// The integer dot-product kernel of [`QuantMatrix::matmul`]: the portable one, or AVX2 where the
/// CPU has it (picked at run time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernel::Avx2;
        }
        Kernel::Scalar
    }

    /// The dot products of one weight row with up to four activation rows.
    fn dot(self, kind: QuantKind, w: WeightRow, acts: &[&[ActBlock]], out: &mut [f32]) {
        match self {
            Kernel::Scalar => {
                for (a, o) in acts.iter().zip(out) {
                    *o = scalar::dot(kind, w, a);
                }
            }
            // SAFETY: `detect` saw AVX2 and FMA on this CPU.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe {
                match acts.len() {
                    4 => avx2::dot::<4>(kind, w, acts, out),
                    3 => avx2::dot::<3>(kind, w, acts, out),
                    2 => avx2::dot::<2>(kind, w, acts, out),
                    _ => avx2::dot::<1>(kind, w, acts, out),
                }
            },
        }
    }
}

mod scalar {
    use super::*;

    pub(super) fn dot(kind: QuantKind, w: WeightRow, a: &[ActBlock]) -> f32 {
        let mut sum = 0.0f32;
        for (b, (q, a)) in w.values.chunks_exact(kind.value_bytes()).zip(a).enumerate() {
            let d = w.scales[b];
            sum += if kind == QuantKind::Q8_0 {
                let i: i32 = q.iter().zip(a.q).map(|(&w, q)| (w as i8) as i32 * q as i32).sum();
                d * a.d * i as f32
            } else {
                let i: i32 = nibbles(q).zip(a.q).map(|(n, q)| n as i32 * q as i32).sum();
                d * a.d * i as f32 + w.offsets[b] * a.s
            };
        }
        sum
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    /// `R` activation rows against one weight row; each weight block is loaded and unpacked once.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot<const R: usize>(kind: QuantKind, w: WeightRow, acts: &[&[ActBlock]], out: &mut [f32]) {
        // SAFETY: as this function's.
        unsafe {
            if kind == QuantKind::Q8_0 { dot_kind::<R, true>(w, acts, out) } else { dot_kind::<R, false>(w, acts, out) }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dot_kind<const R: usize, const Q8: bool>(w: WeightRow, acts: &[&[ActBlock]], out: &mut [f32]) {
        let blocks = w.scales.len();
        assert!(acts.len() >= R && out.len() >= R && acts[..R].iter().all(|a| a.len() >= blocks));
        assert!(w.values.len() >= blocks * if Q8 { 32 } else { 16 } && (Q8 || w.offsets.len() >= blocks));
        let ones = _mm256_set1_epi16(1);
        let low = _mm_set1_epi8(0x0F);
        let acts: [*const ActBlock; R] = std::array::from_fn(|r| acts[r].as_ptr());
        let mut acc = [_mm256_setzero_ps(); R];
        let mut offset = [0.0f32; R];
        // SAFETY: every pointer below stays inside the slices whose lengths are asserted above.
        unsafe {
            for b in 0..blocks {
                let d = *w.scales.get_unchecked(b);
                let weights = if Q8 {
                    _mm256_loadu_si256(w.values.as_ptr().add(b * 32) as *const __m256i)
                } else {
                    let raw = _mm_loadu_si128(w.values.as_ptr().add(b * 16) as *const __m128i);
                    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low), _mm_and_si128(raw, low))
                };
                // maddubs multiplies unsigned by signed bytes: signed Q8_0 weights go in as |w|,
                // their signs moved onto the activations.
                let unsigned = if Q8 { _mm256_sign_epi8(weights, weights) } else { weights };
                let m = if Q8 { 0.0 } else { *w.offsets.get_unchecked(b) };
                for r in 0..R {
                    let a = &*acts[r].add(b);
                    let mut av = _mm256_load_si256(a.q.as_ptr() as *const __m256i);
                    if Q8 {
                        av = _mm256_sign_epi8(av, weights);
                    } else {
                        offset[r] += m * a.s;
                    }
                    let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(unsigned, av), ones);
                    acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(sums), acc[r]);
                }
            }
        }
        for r in 0..R {
            out[r] = horizontal_sum(acc[r]) + offset[r];
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}
