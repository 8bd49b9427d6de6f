//! How a column-major BLAS (cuBLAS) computes a row-major product: `c [m, n] = a [m, k] · b [k, n]`
//! is `cᵀ = bᵀ · aᵀ` in BLAS's terms, with each operand read in place from its strides. Kept
//! apart from the CUDA code so the mapping is tested on any machine, against BLAS's definition.

/// How BLAS reads a row-major 2-D operand `[rows, cols]` held with `strides`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// Rows are contiguous (`strides [ld, 1]`): BLAS sees the transpose in place, `N` with `ld`.
    Rows { ld: usize },
    /// Columns are contiguous (`strides [1, ld]`, a transposed view): `T` with `ld`.
    Columns { ld: usize },
}

impl Operand {
    /// The reading of `[rows, cols]` with `strides`, or `None` when neither rows nor columns are
    /// contiguous (the operand has to be copied first).
    pub fn of(shape: [usize; 2], strides: [usize; 2]) -> Option<Self> {
        let [rows, cols] = shape;
        if strides[1] == 1 && strides[0] >= cols.max(1) {
            Some(Self::Rows { ld: strides[0] })
        } else if strides[0] == 1 && strides[1] >= rows.max(1) {
            Some(Self::Columns { ld: strides[1] })
        } else {
            None
        }
    }

    fn transposed(self) -> bool {
        matches!(self, Self::Columns { .. })
    }

    fn ld(self) -> usize {
        match self {
            Self::Rows { ld } | Self::Columns { ld } => ld,
        }
    }
}

/// The arguments of BLAS's `gemm(transa, transb, m, n, k, A, lda, B, ldb, C, ldc)`; `A` is our
/// `b` and `B` our `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

/// BLAS's arguments for the row-major `c [m, n] = a [m, k] · b [k, n]`, `c` with row stride `ldc`.
pub fn row_major_product(m: usize, k: usize, n: usize, a: Operand, b: Operand, ldc: usize) -> Gemm {
    Gemm { trans_a: b.transposed(), trans_b: a.transposed(), m: n, n: m, k, lda: b.ld(), ldb: a.ld(), ldc }
}
