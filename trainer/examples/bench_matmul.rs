//! f32 matrix products at the shapes of a SmolLM2-135M training step (batch 8 × 64 = 512 rows)
//! and of MiniLM's batches, on the CPU backend, one JSON line per shape; `make bench` runs it
//! beside `scripts/bench_torch_matmul.py` (`torch.matmul`, same shapes and threads). It separates
//! the kernels' share of the P4 gaps from everything around them.
//!
//!     bench_matmul --repeats 20

#[allow(unused)] // the shared bench helpers; this bench needs only `peak_rss_mib`
mod common;

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use clap::Parser;
use lrem_trainer::backend::Cpu;

/// `(name, m, k, n)`: the products of `[m, k] · [k, n]` measured (kept equal to the Python peer's).
pub const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("smollm2 gate/up", 512, 576, 1536),
    ("smollm2 down", 512, 1536, 576),
    ("smollm2 lm head", 512, 576, 49152),
    ("minilm ffn", 4096, 384, 1536),
];

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10)]
    repeats: usize,
}

fn main() {
    lrem_trainer::backend::keep_freed_memory();
    let args = Args::parse();
    let device = Default::default();
    for (name, m, k, n) in SHAPES {
        let a = Tensor::<Cpu, 2>::random([m, k], Distribution::Uniform(-1.0, 1.0), &device);
        let b = Tensor::<Cpu, 2>::random([k, n], Distribution::Uniform(-1.0, 1.0), &device);
        let _ = a.clone().matmul(b.clone()).into_data(); // warm-up: threads, page faults
        let start = Instant::now();
        for _ in 0..args.repeats {
            let _ = a.clone().matmul(b.clone()).into_data();
        }
        let seconds = start.elapsed().as_secs_f64() / args.repeats as f64;
        let gflops = 2.0 * (m * k * n) as f64 / seconds / 1e9;
        println!(
            "{}",
            serde_json::json!({"impl": "burn-candle (gemm 0.19)", "shape": name, "m": m, "k": k, "n": n,
                "seconds": seconds, "gflops": gflops, "peak_rss_mib": common::peak_rss_mib()})
        );
    }
}
