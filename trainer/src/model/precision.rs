//! Mixed precision as PyTorch's `autocast` does it: parameters, optimizer state, norms, softmax,
//! residuals and losses stay in the backend's float type (f32), while the products (the
//! projections, attention's two products and the LM head) take bf16 operands; the tensor cores
//! accumulate in f32, the product comes out rounded to bf16 and is widened back to f32 for what
//! follows. The master weights and AdamW moments are f32, so small updates are not lost to
//! bf16's 8-bit mantissa.
//!
//! Like autocast, the setting belongs to the thread that builds the graph: [`autocast`] returns a
//! guard, and the backward pass follows the casts recorded in the forward one.

use std::cell::Cell;

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

use crate::bail;
use crate::error::Result;

/// The precision of a training run's products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 products on a GPU backend, f32 on CPUs (candle has no bf16 product on CPUs).
    #[default]
    Auto,
    F32,
    /// bf16 products, f32 everything else.
    Bf16,
}

impl Precision {
    /// The dtype the products take on backend `B`, or `None` for the backend's own; an error
    /// for `bf16` on a backend without bf16 products (candle on CPUs).
    pub fn products<B: Backend>(self, device: &B::Device) -> Result<Option<FloatDType>> {
        let name = B::name(device);
        match self {
            Precision::F32 => Ok(None),
            Precision::Bf16 if name.contains("candle<cpu>") => {
                bail!("precision = \"bf16\": the {name} backend has no bf16 products; use \"f32\", or a CUDA build")
            }
            Precision::Bf16 => Ok(Some(FloatDType::BF16)),
            Precision::Auto => Ok((name.contains("cuda") && !name.contains("candle")).then_some(FloatDType::BF16)),
        }
    }
}

thread_local! {
    static PRODUCTS: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// A thread's setting for the life of the guard: the previous value comes back when dropped.
pub struct Scoped<T: Copy + 'static> {
    cell: &'static std::thread::LocalKey<Cell<T>>,
    previous: T,
}

impl<T: Copy + 'static> Scoped<T> {
    pub(crate) fn set(cell: &'static std::thread::LocalKey<Cell<T>>, value: T) -> Self {
        Self { cell, previous: cell.replace(value) }
    }
}

impl<T: Copy + 'static> Drop for Scoped<T> {
    fn drop(&mut self) {
        self.cell.set(self.previous);
    }
}

/// Runs this thread's products in `products` (from [`Precision::products`]; `None`: the
/// backend's own dtype) until the guard is dropped.
pub fn autocast(products: Option<FloatDType>) -> Scoped<Option<FloatDType>> {
    Scoped::set(&PRODUCTS, products)
}

/// `a · b` at the thread's precision, the result in `a`'s dtype.
pub fn matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = FloatDType::from(a.dtype());
    match PRODUCTS.get() {
        Some(low) if dtype != low || FloatDType::from(b.dtype()) != low => {
            low_product(a.cast(low), b.cast(low)).cast(dtype)
        }
        _ => a.matmul(b),
    }
}

/// The product of operands cast to the thread's product dtype: through cuBLAS where it is on
/// (feature `cublas`), Burn's matmul otherwise.
fn low_product<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "cublas")]
    let (a, b) = match super::cublas::try_matmul(a, b) {
        Ok(product) => return product,
        Err(operands) => operands,
    };
    a.matmul(b)
}
