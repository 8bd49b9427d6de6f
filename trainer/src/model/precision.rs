//! Mixed precision as PyTorch's `autocast` does it: parameters, optimizer state, norms, softmax,
//! residuals and losses stay in the backend's float type (f32), while the products (the
//! projections, attention's two products and the LM head) take bf16 inputs and give their result
//! back in f32. The master weights and AdamW moments are f32, so small updates are not lost to
//! bf16's 8-bit mantissa; the tensor cores see bf16 operands.
//!
//! Like autocast, the setting belongs to the thread that builds the graph: [`autocast`] returns a
//! guard, and the backward pass follows the casts recorded in the forward one.

use std::cell::Cell;

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The precision of a training run's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 products on CUDA builds, f32 on CPU (candle's CPU bf16 products are slower than f32).
    #[default]
    Auto,
    F32,
    /// bf16 products, f32 everything else.
    Bf16,
}

impl Precision {
    /// The dtype the products take, or `None` for the backend's own.
    pub fn products(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::Auto if cfg!(feature = "cuda") => Some(FloatDType::BF16),
            Precision::Auto => None,
        }
    }
}

thread_local! {
    static PRODUCTS: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// Restores the thread's previous precision when dropped.
pub struct Autocast {
    previous: Option<FloatDType>,
}

impl Drop for Autocast {
    fn drop(&mut self) {
        PRODUCTS.set(self.previous);
    }
}

/// Runs this thread's products at `precision` until the guard is dropped.
pub fn autocast(precision: Precision) -> Autocast {
    Autocast { previous: PRODUCTS.replace(precision.products()) }
}

/// `a · b` at the thread's precision, the result in `a`'s dtype.
pub fn matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    match PRODUCTS.get() {
        Some(low) if FloatDType::from(a.dtype()) != low => {
            let dtype = FloatDType::from(a.dtype());
            a.cast(low).matmul(b.cast(low)).cast(dtype)
        }
        _ => a.matmul(b),
    }
}
