//! The cuBLAS product (feature `cublas`, run by `scripts/gpu_bench.sh` on a GPU) against Burn's
//! own bf16 matmul: the same values and the same gradients, for plain and transposed operands and
//! for a whole cold-start step of a tiny decoder.

use std::sync::Mutex;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use lrem_trainer::backend::Train;
use lrem_trainer::format::QuerySequence;
use lrem_trainer::model::cublas;
use lrem_trainer::model::decoder::{Decoder, DecoderConfig};
use lrem_trainer::model::layers::host;
use lrem_trainer::model::precision::{self, autocast};
use lrem_trainer::model::weights::RandomWeights;
use lrem_trainer::train::config::LossConfig;
use lrem_trainer::train::data::Example;
use lrem_trainer::train::step::{Memory, batch_gradients};

use crate::ddp::{Values, relative_gap};

/// `cublas::enable` is process-wide: the tests that switch it take turns.
static SWITCH: Mutex<()> = Mutex::new(());

fn with_cublas<T>(on: bool, f: impl FnOnce() -> T) -> T {
    let before = cublas::products_run();
    cublas::enable(on);
    let out = f();
    cublas::enable(false);
    // on: the products went through cuBLAS, not back to Burn's matmul unnoticed
    assert_eq!(cublas::products_run() > before, on, "cuBLAS on = {on}");
    out
}

/// `a · b` under bf16 autocast, its value and the gradients of `Σ (a·b) ⊙ w`.
fn product(a: &Tensor<Train, 2>, b: &Tensor<Train, 2>, w: &Tensor<Train, 2>) -> [Vec<f32>; 3] {
    let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
    let _bf16 = autocast(Some(burn::tensor::FloatDType::BF16));
    let c = precision::matmul(a.clone(), b.clone());
    let grads = (c.clone() * w.clone()).sum().backward();
    [host(c), host(a.grad(&grads).unwrap()), host(b.grad(&grads).unwrap())]
}

#[test]
fn the_cublas_product_and_its_gradients_equal_burns_in_bf16() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    let random = |shape: [usize; 2]| Tensor::<Train, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let (m, k, n) = (37, 64, 45);
    let w = random([m, n]);
    // row-major operands, and transposed views (what the backward hands cuBLAS)
    let cases = [
        ("plain", random([m, k]), random([k, n])),
        ("transposed", random([k, m]).transpose(), random([n, k]).transpose()),
    ];
    for (name, a, b) in cases {
        let burn = with_cublas(false, || product(&a, &b, &w));
        let ours = with_cublas(true, || product(&a, &b, &w));
        for (what, x, y) in [("a·b", &burn[0], &ours[0]), ("da", &burn[1], &ours[1]), ("db", &burn[2], &ours[2])] {
            // both round bf16 products of the same bf16 operands, accumulated in f32
            let gap = relative_gap(std::slice::from_ref(x), std::slice::from_ref(y));
            assert!(gap < 2e-2, "{name} {what}: relative gap {gap}");
        }
    }
}

#[test]
fn a_decoder_step_through_cublas_has_burns_loss_and_gradients() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let config = DecoderConfig::tiny(50);
    let model = Decoder::<Train>::load(&config, &mut RandomWeights::new(7), &Default::default()).unwrap();
    let examples: Vec<Example> = (0..4u32)
        .map(|i| Example {
            query_id: i as u64,
            item_id: i as i64,
            query: QuerySequence { ids: (0..12).map(|j| (i * 7 + j * 3) % 50).collect(), first_target: 2 },
            item: (0..9).map(|j| (i * 5 + j * 11) % 50).collect(),
        })
        .collect();
    let batch: Vec<&Example> = examples.iter().collect();
    let loss = LossConfig { ntp_weight: 1.0, ..Default::default() };
    let step = |on: bool| {
        with_cublas(on, || {
            let _bf16 = autocast(Some(burn::tensor::FloatDType::BF16));
            let (grads, parts) = batch_gradients(&model, &batch, &loss, Memory::from(0), 1.0);
            let mut values = Values { grads: Some(&grads), out: Vec::new() };
            model.visit(&mut values);
            (parts.total, values.out)
        })
    };
    let (burn_loss, burn) = step(false);
    let (our_loss, ours) = step(true);
    assert!((burn_loss - our_loss).abs() < 1e-2 * burn_loss.abs().max(1.0), "loss {burn_loss} vs {our_loss}");
    let gap = relative_gap(&burn, &ours);
    assert!(gap < 5e-2, "gradients: relative gap {gap}");
}
