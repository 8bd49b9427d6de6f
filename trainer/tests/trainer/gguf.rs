//! GGUF loading: k-quants for training and inference, and the converters' permutation undone.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use lrem_trainer::model::gguf::*;
use lrem_trainer::model::weights::WeightSource;

/// A GGUF file holding one `qwen2` layer's q, k, v and down projections in the types a
/// `Q4_K_M` file mixes, quantised by candle from seeded values.
fn k_quant_file(dir: &Path) -> PathBuf {
    use candle_core::quantized::{QTensor, gguf_file};
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let tensors: Vec<(&str, QTensor)> = [
        ("blk.0.attn_q.weight", GgmlDType::Q4K),
        ("blk.0.attn_k.weight", GgmlDType::Q5K),
        ("blk.0.attn_v.weight", GgmlDType::Q6K),
        ("blk.0.ffn_down.weight", GgmlDType::Q5_0),
    ]
    .into_iter()
    .map(|(name, dtype)| {
        let values: Vec<f32> = (0..8 * 512).map(|_| rng.random_range(-1.0..1.0)).collect();
        let t = candle_core::Tensor::from_vec(values, (8, 512), &candle_core::Device::Cpu).unwrap();
        (name, QTensor::quantize(&t, dtype).unwrap())
    })
    .collect();
    let arch = Value::String("qwen2".into());
    let path = dir.join("k.gguf");
    let mut file = File::create(&path).unwrap();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    gguf_file::write(&mut file, &[("general.architecture", &arch)], &refs).unwrap();
    path
}

#[test]
fn k_quants_load_for_training_and_stay_quantised_for_inference() {
    let dir = tempfile::tempdir().unwrap();
    let mut gguf = GgufFile::open(&k_quant_file(dir.path())).unwrap();
    for (name, exact) in [
        ("model.layers.0.self_attn.q_proj.weight", true), // Q4_K: the same values as Q4_1 blocks
        ("model.layers.0.self_attn.k_proj.weight", false), // Q5_K, Q6_K, Q5_0: requantised to 8 bits
        ("model.layers.0.self_attn.v_proj.weight", false),
        ("model.layers.0.mlp.down_proj.weight", false),
    ] {
        let f32 = gguf.read(name).unwrap();
        assert_eq!(f32.shape, [8, 512]);
        let blocks = gguf.read_quantized(name).unwrap().unwrap();
        let unpacked = blocks.dequantize();
        if exact {
            assert!(unpacked == f32.values, "{name}: Q4_K blocks unpack to other values than candle's");
        } else {
            // Half a step of a 8-bit block scale: amax / 254 ≤ 1/254 here.
            let worst = unpacked.iter().zip(&f32.values).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 1.0 / 250.0, "{name}: requantised values off by {worst}");
        }
    }
}

#[test]
fn unpermute_inverts_the_converters_permutation() {
    // llama.cpp: w.reshape(heads, 2, d/2, cols).swapaxes(1, 2): HF row k·(d/2)+j → GGUF row 2j+k.
    let (heads, d, cols) = (2, 4, 3);
    let hf: Vec<f32> = (0..heads * d * cols).map(|x| x as f32).collect();
    let mut gguf = vec![0.0; hf.len()];
    for h in 0..heads {
        for k in 0..2 {
            for j in 0..d / 2 {
                let src = h * d + k * (d / 2) + j;
                let dst = h * d + 2 * j + k;
                gguf[dst * cols..(dst + 1) * cols].copy_from_slice(&hf[src * cols..(src + 1) * cols]);
            }
        }
    }
    assert_eq!(unpermute_rows(&gguf, &[heads * d, cols], heads), hf);
}
