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

/// The device of [`Inference`] and [`Train`].
#[cfg(feature = "cuda")]
pub type Device = burn::backend::cuda::CudaDevice;
#[cfg(not(feature = "cuda"))]
#[allow(deprecated)]
pub type Device = burn::backend::candle::CandleDevice;

/// The device of the process with `local_rank` on its node: under CUDA, GPU `local_rank` modulo
/// the GPUs this process sees (a launcher that hands each task one GPU makes that GPU 0), the
/// CPU otherwise.
pub fn device(local_rank: usize) -> Device {
    #[cfg(feature = "cuda")]
    {
        use burn::tensor::backend::Backend;
        let visible = Inference::device_count(0).max(1);
        return burn::backend::cuda::CudaDevice::new(local_rank % visible);
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = local_rank;
        Default::default()
    }
}

/// Keeps CubeCL's autotune results and compiled kernels in `dir` (default: `kernel-cache/`
/// beside the executable, so binaries carried to a fresh GPU machine tune once per machine and
/// not once per run; CubeCL's own default is a `target/` folder found from the working directory).
/// A `cubecl.toml` that sets either cache keeps its setting. Call before any kernel runs.
#[cfg(feature = "cuda")]
pub fn configure_kernel_caches(dir: Option<std::path::PathBuf>) {
    use cubecl::config::cache::CacheConfig;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let dir = dir.or_else(|| Some(std::env::current_exe().ok()?.parent()?.join("kernel-cache")));
    let Some(dir) = dir else { return };
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if matches!(config.autotune.cache, CacheConfig::Target) {
        config.autotune.cache = CacheConfig::File(dir.join("autotune"));
    }
    if config.compilation.cache.is_none() {
        config.compilation.cache = Some(CacheConfig::File(dir.join("kernels")));
    }
    // Fails only when something already read the configuration (a kernel ran): keep that one.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || CubeClRuntimeConfig::set(config))).is_err() {
        tracing::warn!("CubeCL was configured before the kernel caches could be set");
    }
}

/// The CPU build has no kernel caches.
#[cfg(not(feature = "cuda"))]
pub fn configure_kernel_caches(_dir: Option<std::path::PathBuf>) {}

/// Sizes the CPU thread pools once, before any model runs: `threads`, else `RAYON_NUM_THREADS`,
/// else the cores this process may use (`available_parallelism` honours cgroup quotas and CPU
/// affinity, so a container limited to 2 CPUs on a 64-core host gets 2). Rayon's global pool runs
/// the quantised matmuls; candle's gemm reads `RAYON_NUM_THREADS` on every product, so both see
/// the same count. Returns it.
pub fn configure_threads(threads: Option<usize>) -> usize {
    let from_env = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0);
    let n = threads
        .filter(|&n| n > 0)
        .or(from_env)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // SAFETY: called first thing in `main`, before this process starts any other thread.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    // Fails only when the pool already exists (a second call), which keeps its size.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    n
}

/// Keeps freed memory in the process for the next allocation instead of handing it back to the
/// kernel. glibc serves every allocation above 32 MB (logits, the embedding's gradient, most
/// activations of a training step) from a fresh `mmap` and unmaps it on free, so each step paid
/// for the kernel zeroing the same pages again: 11% of a SmolLM2 training step in `perf`, 2.4 M
/// page faults per two steps. With mmap off and trimming rare, the freed blocks are reused
/// (0.7 M page faults, 14% less CPU time). The peak RSS stays the same; between peaks the
/// process keeps what it had. glibc only; other allocators are left as they are.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the process allocates much.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
