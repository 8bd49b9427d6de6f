//! The BLAS operand layouts of the CPU product against BLAS's own definition.

use lrem_trainer::model::blas_layout::*;

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
