//! GGUF block quantisation: decoding order, products against the dequantised weights.

use half::f16;
use lrem_trainer::model::quant::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random blocks of every kind: scales of either sign, all nibble and byte values.
fn random_matrix(kind: QuantKind, rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> QuantMatrix {
    let mut data = Vec::new();
    for _ in 0..rows * cols / BLOCK {
        data.extend(f16::from_f32(rng.random_range(-0.05..0.05)).to_le_bytes());
        if kind == QuantKind::Q4_1 {
            data.extend(f16::from_f32(rng.random_range(-0.2..0.2)).to_le_bytes());
        }
        let n = if kind == QuantKind::Q8_0 { 32 } else { 16 };
        // Q8_0 stays in ±127, as quantisers write it.
        data.extend(
            (0..n).map(
                |_| {
                    if kind == QuantKind::Q8_0 { rng.random_range(-127i8..=127) as u8 } else { rng.random::<u8>() }
                },
            ),
        );
    }
    QuantMatrix::new(kind, rows, cols, data).unwrap()
}

fn reference(w: &[f32], x: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * rows];
    for i in 0..n {
        for r in 0..rows {
            out[i * rows + r] = (0..cols).map(|c| x[i * cols + c] * w[r * cols + c]).sum();
        }
    }
    out
}

#[test]
fn products_match_the_dequantised_weights_within_8_bit_activation_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for kind in [QuantKind::Q4_0, QuantKind::Q4_1, QuantKind::Q8_0] {
        // 7 activation rows: a tile of 4 and the remainder; 37 weight rows: a partial task.
        let (n, rows, cols) = (7, 37, 96);
        let w = random_matrix(kind, rows, cols, &mut rng);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
        let exact = reference(&w.dequantize(), &x, n, rows, cols);
        let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scalar = w.matmul_with(&x, n, Kernel::Scalar);
        let worst = exact.iter().zip(&scalar).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst <= 0.02 * scale, "{kind:?}: scalar off by {worst} (scale {scale})");
        let detected = w.matmul(&x, n);
        // The SIMD kernel sums the same integers, so it agrees to float rounding.
        let drift = scalar.iter().zip(&detected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(drift <= 1e-4 * scale, "{kind:?}: {:?} differs from scalar by {drift}", Kernel::detect());
    }
}

#[test]
fn blocks_decode_in_ggml_order() {
    // Byte j holds value j in its low nibble and value j + 16 in its high nibble.
    let one = f16::from_f32(1.0).to_le_bytes();
    let mut q4_1 = [one, f16::from_f32(0.5).to_le_bytes()].concat();
    q4_1.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let w = QuantMatrix::new(QuantKind::Q4_1, 1, 32, q4_1).unwrap().dequantize();
    let expected: Vec<f32> = (0..16).chain((0..16).rev()).map(|v| v as f32 + 0.5).collect();
    assert_eq!(w, expected);
    let mut q4_0 = one.to_vec();
    q4_0.extend([0x80u8; 16]);
    let w = QuantMatrix::new(QuantKind::Q4_0, 1, 32, q4_0).unwrap().dequantize();
    assert_eq!(w, [vec![-8.0; 16], vec![0.0; 16]].concat());
    // And the product of that row with ones is its sum, on every kernel.
    let w = QuantMatrix::new(QuantKind::Q4_0, 1, 32, [one.to_vec(), vec![0x80; 16]].concat()).unwrap();
    assert!((w.matmul(&[1.0; 32], 1)[0] + 128.0).abs() < 1e-3);
    assert!((w.matmul_with(&[1.0; 32], 1, Kernel::Scalar)[0] + 128.0).abs() < 1e-3);
}

#[test]
fn a_wrong_size_is_refused() {
    assert!(QuantMatrix::new(QuantKind::Q8_0, 2, 48, vec![0; 68]).is_err());
    assert!(QuantMatrix::new(QuantKind::Q8_0, 2, 32, vec![0; 67]).is_err());
}
