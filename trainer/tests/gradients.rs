//! Gradients through the whole decoder agree with central finite differences, in float64 (its
//! own test binary: the default float type is set per device, once per process).

#[allow(deprecated)]
use burn::backend::{Autodiff, Candle};
use burn::module::Param;
use burn::tensor::backend::{Backend, set_default_float_dtype};
use burn::tensor::{DType, Tensor, TensorData};
use lrem_trainer::model::decoder::{Decoder, DecoderConfig};
use lrem_trainer::model::weights::RandomWeights;

#[allow(deprecated)] // the CPU backend in float64 (see trainer/src/backend.rs)
type B64 = Candle<f64, i64>;

fn tiny<Bk: Backend>(seed: u64) -> Decoder<Bk> {
    Decoder::load(&DecoderConfig::tiny(50), &mut RandomWeights::new(seed), &Default::default()).unwrap()
}

/// A scalar loss of the whole forward pass: a fixed random projection of all logits.
fn loss<Bk: Backend>(model: &Decoder<Bk>, ids: &[Vec<u32>]) -> Tensor<Bk, 1> {
    let valid: Vec<Vec<bool>> = ids.iter().map(|r| vec![true; r.len()]).collect();
    let logits = model.logits(model.forward(ids, &valid, None));
    let [b, t, v] = logits.dims();
    let w: Vec<f32> = (0..b * t * v).map(|i| ((i * 7919 % 101) as f32 / 101.0) - 0.5).collect();
    let w = Tensor::<Bk, 3>::from_data(TensorData::new(w, [b, t, v]).convert::<Bk::FloatElem>(), &logits.device());
    (logits * w).sum()
}

fn host64<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

fn param_mut<'a, Bk: Backend>(m: &'a mut Decoder<Bk>, what: &str) -> &'a mut Param<Tensor<Bk, 2>> {
    match what {
        "embed" => &mut m.embed,
        "layer 0 q" => &mut m.blocks[0].attn.q.weight,
        "layer 0 k" => &mut m.blocks[0].attn.k.weight,
        "layer 1 down" => &mut m.blocks[1].mlp.down.weight,
        _ => unreachable!(),
    }
}

#[test]
fn gradients_match_finite_differences() {
    type AD = Autodiff<B64>;
    set_default_float_dtype::<B64>(&Default::default(), DType::F64).unwrap();
    let ids = vec![vec![3u32, 17, 5, 42, 8], vec![1, 2, 3, 4, 5]];
    let mut model = tiny::<AD>(3);
    let grads = loss(&model, &ids).backward();
    let eps = 1e-6;
    // Entries of parameters at the bottom, middle and top of the network (in f64, so the
    // central difference is accurate to ~1e-8).
    for (what, index) in [("embed", 3 * 32 + 5), ("layer 0 q", 17), ("layer 0 k", 9), ("layer 1 down", 100)] {
        let analytic = host64(param_mut(&mut model, what).grad(&grads).expect("a gradient"))[index];
        let at = |delta: f64| {
            let mut m = tiny::<B64>(3);
            let p = param_mut(&mut m, what);
            let mut data = host64(p.val());
            data[index] += delta;
            *p = Param::from_tensor(Tensor::from_data(TensorData::new(data, p.dims()), &Default::default()));
            host64(loss(&m, &ids))[0]
        };
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        let rel = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-6);
        assert!(rel < 1e-6, "{what}[{index}]: analytic {analytic} vs numeric {numeric} (rel {rel})");
    }
}
