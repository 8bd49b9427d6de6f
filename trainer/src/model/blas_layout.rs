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

#[cfg(test)]
mod tests {
    use super::*;

    /// BLAS's definition: `C = op(A) · op(B)`, every matrix column-major with its leading
    /// dimension; `op(X)` is `X` or `Xᵀ`.
    fn reference_gemm(g: &Gemm, a: &[f32], b: &[f32], c: &mut [f32]) {
        let at = |i: usize, p: usize| if g.trans_a { a[p + i * g.lda] } else { a[i + p * g.lda] };
        let bt = |p: usize, j: usize| if g.trans_b { b[j + p * g.ldb] } else { b[p + j * g.ldb] };
        for j in 0..g.n {
            for i in 0..g.m {
                c[i + j * g.ldc] = (0..g.k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
    }

    /// A row-major `[rows, cols]` matrix held rows-contiguous with `pad` spare columns, or
    /// columns-contiguous (a transposed view), as a buffer and its strides.
    fn hold(values: &[f32], [rows, cols]: [usize; 2], by_columns: bool, pad: usize) -> (Vec<f32>, [usize; 2]) {
        if by_columns {
            let ld = rows + pad;
            let mut buf = vec![f32::NAN; ld * cols];
            for r in 0..rows {
                for c in 0..cols {
                    buf[r + c * ld] = values[r * cols + c];
                }
            }
            (buf, [1, ld])
        } else {
            let ld = cols + pad;
            let mut buf = vec![f32::NAN; ld * rows];
            for r in 0..rows {
                buf[r * ld..r * ld + cols].copy_from_slice(&values[r * cols..(r + 1) * cols]);
            }
            (buf, [ld, 1])
        }
    }

    #[test]
    fn every_operand_layout_gives_the_row_major_product() {
        let (m, k, n) = (5, 3, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        let want: Vec<f32> = (0..m * n).map(|ij| (0..k).map(|p| a[ij / n * k + p] * b[p * n + ij % n]).sum()).collect();
        for (a_cols, b_cols, pad, ldc) in
            [(false, false, 0, n), (true, false, 0, n), (false, true, 2, n), (true, true, 1, n + 3)]
        {
            let (abuf, astrides) = hold(&a, [m, k], a_cols, pad);
            let (bbuf, bstrides) = hold(&b, [k, n], b_cols, pad);
            let (oa, ob) = (Operand::of([m, k], astrides).unwrap(), Operand::of([k, n], bstrides).unwrap());
            let g = row_major_product(m, k, n, oa, ob, ldc);
            let mut c = vec![f32::NAN; m * ldc];
            reference_gemm(&g, &bbuf, &abuf, &mut c);
            for i in 0..m {
                for j in 0..n {
                    let (got, want) = (c[i * ldc + j], want[i * n + j]);
                    assert!((got - want).abs() < 1e-5, "{a_cols} {b_cols} pad {pad}: c[{i},{j}] {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn an_operand_with_neither_rows_nor_columns_contiguous_is_refused() {
        assert_eq!(Operand::of([4, 6], [12, 2]), None);
        assert_eq!(Operand::of([4, 6], [6, 1]), Some(Operand::Rows { ld: 6 }));
        assert_eq!(Operand::of([4, 6], [1, 4]), Some(Operand::Columns { ld: 4 }));
    }
}
