//! The backends, each chosen in one alias so the choice can change in one line.
//!
//! CPU: Burn's `candle` backend. Measured here (burn 0.21, 2 threads, f32 matmul per call) it is
//! the fastest of Burn's CPU backends on decode-shaped products: 6.0 ms for the 1×576×49152 LM
//! head against 9.6 ms (`flex`) and 108 ms (`ndarray`, which copies both operands of every
//! matmul). `make bench` measures `flex` beside it on the whole model.

/// The CPU backend for inference and tests.
#[allow(deprecated)] // burn-candle is deprecated upstream but works, and is the faster CPU backend here.
pub type Cpu = burn::backend::Candle<f32, i64>;
/// The CPU backend with gradients.
pub type CpuAutodiff = burn::backend::Autodiff<Cpu>;
/// Burn's pure-Rust CPU backend, measured beside [`Cpu`] by the benchmarks.
pub type Flex = burn::backend::Flex;

/// The CUDA backend (feature `cuda`): kernels compiled by NVRTC when first used.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;

/// The backend the CLI, the server and the parity tests run on: CUDA when built with
/// `--features cuda`, the CPU backend otherwise.
#[cfg(feature = "cuda")]
pub type Inference = Cuda;
#[cfg(not(feature = "cuda"))]
pub type Inference = Cpu;

/// The backend training runs on: [`Inference`] with gradients.
pub type Train = burn::backend::Autodiff<Inference>;
