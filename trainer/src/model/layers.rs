//! The building blocks shared by the decoder and the encoder, with PyTorch's numerics.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::quant::QuantMatrix;

/// A dense layer. The weight is kept as `[in, out]` (transposed once at load from PyTorch's
/// `[out, in]`) so the forward pass is a plain matmul with no per-call transpose.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The same weight as a GGUF file stores it, multiplied as stored by inference (`quant`);
    /// set only by [`super::LanguageModel::load_quantized`], never on a model being trained.
    #[module(skip)]
    pub quant: Option<Arc<QuantMatrix>>,
}

impl<B: Backend> Linear<B> {
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self { weight: Param::from_tensor(weight), bias: bias.map(Param::from_tensor), quant: None }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims.iter().take(D - 1).product::<usize>();
        let x = x.reshape([rows, d_in]);
        let y = match quantized_for(&self.quant, rows) {
            Some(q) => quantized_matmul(q, x),
            None => super::precision::matmul(x, self.weight.val()),
        };
        let mut out = dims;
        out[D - 1] = self.weight.dims()[1];
        self.add_bias(y).reshape(out)
    }

    /// `y + bias` for `y` `[rows, out]`, when there is a bias.
    pub fn add_bias(&self, y: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze_dim(0),
            None => y,
        }
    }

    /// Several layers over the same input as one product with their stacked quantised weights
    /// (`stacked` holds each layer's rows in turn): one pass over `x` and one fan-out to the
    /// threads instead of one per layer.
    pub fn forward_stacked<const N: usize>(
        layers: [&Self; N],
        stacked: &QuantMatrix,
        x: Tensor<B, 3>,
    ) -> [Tensor<B, 3>; N] {
        let [b, t, d] = x.dims();
        let y = quantized_matmul(stacked, x.reshape([b * t, d]));
        Self::split_columns(layers, y, [b, t])
    }

    /// Several layers over the same input as one product with their weights side by side
    /// (`[in, Σ out]`, concatenated each call, so the parameters stay separate): one wide
    /// product instead of several narrow ones (k and v of a grouped-query layer are an eighth
    /// of q's width), which keeps a GPU's tensor cores busier. Enabled by [`fuse_products`].
    pub fn forward_fused<const N: usize>(layers: [&Self; N], x: Tensor<B, 3>) -> [Tensor<B, 3>; N] {
        let [b, t, d] = x.dims();
        let weight = Tensor::cat(layers.iter().map(|l| l.weight.val()).collect(), 1);
        let y = super::precision::matmul(x.reshape([b * t, d]), weight);
        Self::split_columns(layers, y, [b, t])
    }

    /// Each layer's columns of a joint product `[b·t, Σ out]`, with its bias, as `[b, t, out]`.
    fn split_columns<const N: usize>(layers: [&Self; N], y: Tensor<B, 2>, [b, t]: [usize; 2]) -> [Tensor<B, 3>; N] {
        let mut start = 0;
        layers.map(|layer| {
            let width = layer.d_out();
            let part = layer.add_bias(y.clone().narrow(1, start, width));
            start += width;
            part.reshape([b, t, width])
        })
    }

    pub fn d_out(&self) -> usize {
        self.weight.dims()[1]
    }
}

thread_local! {
    static FUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs q/k/v and gate/up as one product each ([`Linear::forward_fused`]) on this thread until
/// the guard is dropped (the quantised inference path stacks them in any case).
pub fn fuse_products(on: bool) -> super::precision::Scoped<bool> {
    super::precision::Scoped::set(&FUSED, on)
}

/// Whether this thread runs fused products.
pub fn fused_products() -> bool {
    FUSED.get()
}

/// Above this many rows (a prefill) gemm over the f32 weights beats the quantised kernels here
/// (SmolLM2, 2 threads, gemm built without debug assertions: even at 32 rows, f32 faster from 64,
/// 206 against 163 tok/s; at 16, a batch-16 decode step, the blocks win 125 against 105), so
/// such products go there; decoding stays under it.
pub const QUANTIZED_MAX_ROWS: usize = 32;

/// The quantised weight to multiply `rows` rows by, if any.
pub fn quantized_for(quant: &Option<Arc<QuantMatrix>>, rows: usize) -> Option<&QuantMatrix> {
    quant.as_deref().filter(|_| rows <= QUANTIZED_MAX_ROWS)
}

/// `x · Wᵀ` with `W` as stored, through the host (`x` is a few rows on the paths that use it).
pub fn quantized_matmul<B: Backend>(w: &QuantMatrix, x: Tensor<B, 2>) -> Tensor<B, 2> {
    let device = x.device();
    let [rows, _] = x.dims();
    tensor(w.matmul(&host(x), rows), [rows, w.rows], &device)
}

/// Root-mean-square norm as in Llama: `x / sqrt(mean(x²) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let rms = x.clone().powi_scalar(2).mean_dim(2).add_scalar(self.eps).sqrt();
        x.div(rms).mul(self.weight.val().unsqueeze_dim::<2>(0).unsqueeze_dim(0))
    }
}

/// Layer norm with a learned scale and shift (BERT).
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mean = x.clone().mean_dim(2);
        let centred = x.sub(mean);
        let var = centred.clone().powi_scalar(2).mean_dim(2);
        let normed = centred.div(var.add_scalar(self.eps).sqrt());
        normed.mul(self.weight.val().unsqueeze_dim::<2>(0).unsqueeze_dim(0))
            + self.bias.val().unsqueeze_dim::<2>(0).unsqueeze_dim(0)
    }
}

/// `x · sigmoid(x)` as `x / (1 + e^-x)`, in the tensor's own precision (Burn's `sigmoid` rounds
/// through f32, which hides float64 gradient checks). For x → -∞, e^-x overflows to ∞ and the
/// quotient is the right limit, 0.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone().div(x.neg().exp().add_scalar(1.0))
}

/// A float tensor from host values, checked against its shape.
pub fn tensor<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    // Converted to the backend's float type: some backends keep whatever dtype the data has.
    Tensor::from_data(TensorData::new(values, shape).convert::<B::FloatElem>(), device)
}

/// `[out, in]` row-major → `[in, out]` row-major.
pub fn transpose_host(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// The values of a float tensor on the host.
pub fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32 tensor data")
}
