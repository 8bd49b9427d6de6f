//! Training-step throughput of the cold-start step on a random-weight decoder: tokens/s, step
//! time, and (on a GPU) model FLOPs utilisation. The workload, identical in
//! a batch of `batch` sequences of `seq` random tokens, the first half queries and the second
//! half their items; NTP over every query token plus InfoNCE between the last hidden states of
//! the two halves; backward; global clipping; one AdamW step.
//!
//! Model FLOPs per step: 6 · (block parameters) · all tokens + 6 · (hidden · vocab) · query
//! tokens (the LM head runs on NTP targets only); attention's score products are left out.
//!
//! `bench_train_step --shape smollm2-135m --batch 8 --seq 128 --steps 3 [--backend cpu|cuda-f32|cuda-bf16] [--peak-tflops 989]`

use std::time::Instant;

use anyhow::{Result, bail};
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use lrem_trainer::format::QuerySequence;
use lrem_trainer::model::decoder::{Decoder, DecoderConfig};
use lrem_trainer::model::weights::{HostTensor, WeightSource};
use lrem_trainer::train::config::{LossConfig, OptimConfig};
use lrem_trainer::train::data::Example;
use lrem_trainer::train::optim::{adamw, clip_global_norm};
use lrem_trainer::train::step::batch_gradients;

/// Uniform values in ±scale from a xorshift generator: fast enough for billions of weights.
struct FastRandom {
    state: u64,
    scale: f32,
}

impl WeightSource for FastRandom {
    fn origin(&self) -> String {
        "random".into()
    }
    fn contains(&self, _: &str) -> bool {
        true
    }
    fn read(&mut self, name: &str) -> lrem_trainer::Result<HostTensor> {
        lrem_trainer::bail!("no shape for {name}")
    }
    fn expect(&mut self, name: &str, shape: &[usize]) -> lrem_trainer::Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let centre = if name.contains("norm") { 1.0 } else { 0.0 };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let unit = (self.state >> 40) as f32 / (1u64 << 24) as f32;
            out.push(centre + self.scale * (2.0 * unit - 1.0));
        }
        Ok(out)
    }
}

fn shape(name: &str) -> Result<DecoderConfig> {
    let mut c = DecoderConfig::tiny(49_155);
    match name {
        // SmolLM2-135M (llama): the model `make train` trains.
        "smollm2-135m" => {
            (c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) =
                (576, 1536, 30, 9, 3, 64);
            (c.qkv_bias, c.rope_theta, c.max_position) = (false, 100_000.0, 8192);
        }
        // Qwen2.5-3B (qwen2): the shape the issue asks to time on a GPU.
        "qwen2.5-3b" => {
            c.architecture = "qwen2".into();
            c.vocab_size = 151_936;
            (c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) =
                (2048, 11008, 36, 16, 2, 128);
            (c.qkv_bias, c.rope_theta, c.max_position, c.rms_norm_eps) = (true, 1_000_000.0, 32_768, 1e-6);
        }
        "tiny" => {}
        other => bail!("unknown shape `{other}` (smollm2-135m, qwen2.5-3b, tiny)"),
    }
    Ok(c)
}

/// Parameters of the blocks and final norm, and of the LM head (the embedding when tied).
fn parameters(c: &DecoderConfig) -> (f64, f64) {
    let (h, i, l) = (c.hidden_size as f64, c.intermediate_size as f64, c.num_layers as f64);
    let q = (c.num_heads * c.head_dim) as f64;
    let kv = (c.num_kv_heads * c.head_dim) as f64;
    let attn = h * q + 2.0 * h * kv + q * h + if c.qkv_bias { q + 2.0 * kv } else { 0.0 };
    let per_layer = attn + 3.0 * h * i + 2.0 * h;
    (l * per_layer + h, h * c.vocab_size as f64)
}

struct Args {
    shape: String,
    batch: usize,
    seq: usize,
    steps: usize,
    backend: String,
    peak_tflops: f64,
}

fn args() -> Result<Args> {
    let mut a =
        Args { shape: "smollm2-135m".into(), batch: 8, seq: 128, steps: 3, backend: "cpu".into(), peak_tflops: 0.0 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--shape" => a.shape = value,
            "--batch" => a.batch = value.parse()?,
            "--seq" => a.seq = value.parse()?,
            "--steps" => a.steps = value.parse()?,
            "--backend" => a.backend = value,
            "--peak-tflops" => a.peak_tflops = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn run<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<()> {
    let config = shape(&a.shape)?;
    let t = Instant::now();
    let mut model = Decoder::<B>::load(&config, &mut FastRandom { state: 0x9E37_79B9_7F4A_7C15, scale: 0.02 }, device)?;
    B::sync(device).ok();
    let load_s = t.elapsed().as_secs_f64();
    let mut optim = adamw(&OptimConfig::default()).init::<B, Decoder<B>>();
    let loss = LossConfig { ntp_weight: 1.0, ..Default::default() };
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut token = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % config.vocab_size as u64) as u32
    };
    let half = a.batch / 2;
    let examples: Vec<Example> = (0..half)
        .map(|i| Example {
            query_id: i as u64,
            item_id: i as i64,
            query: QuerySequence { ids: (0..a.seq).map(|_| token()).collect(), first_target: 1 },
            item: (0..a.seq).map(|_| token()).collect(),
        })
        .collect();
    let batch: Vec<&Example> = examples.iter().collect();
    let tokens = (a.batch * a.seq) as f64;
    let mut times = Vec::new();
    for step in 0..a.steps + 1 {
        let t = Instant::now();
        let (grads, parts) = batch_gradients(&model, &batch, &loss, 0, 1.0);
        let mut grads = grads;
        let norm = clip_global_norm::<B, _>(&model, &mut grads, 1.0);
        model = optim.step(1e-5, model, grads);
        B::sync(device).ok();
        let s = t.elapsed().as_secs_f64();
        eprintln!("step {step}: {s:.3}s loss {:.4} grad norm {norm:.3}", parts.total);
        if step > 0 {
            times.push(s); // step 0 compiles kernels / warms caches
        }
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let (blocks, head) = parameters(&config);
    let params = blocks + head;
    let flops = 6.0 * blocks * tokens + 6.0 * head * tokens / 2.0;
    let mfu = if a.peak_tflops > 0.0 {
        format!(", MFU {:.1}%", 100.0 * flops / mean / (a.peak_tflops * 1e12))
    } else {
        String::new()
    };
    println!(
        "{{\"impl\": \"burn {}\", \"batch\": {}, \"seq\": {}, \"step_s\": {mean}, \"tok_s\": {}, \"peak_rss_mib\": {}}}",
        a.backend,
        a.batch,
        a.seq,
        tokens / mean,
        peak_rss_mib()
    );
    eprintln!(
        "{} ({:.0}M params) on {}: batch {} × seq {}: {:.3} s/step, {:.0} tokens/s, {:.1} TFLOP/s (6·N·tokens){mfu}; load {:.1}s",
        a.shape,
        params / 1e6,
        a.backend,
        a.batch,
        a.seq,
        mean,
        tokens / mean,
        flops / mean / 1e12,
        load_s
    );
    Ok(())
}

/// The process's peak resident set (VmHWM), in MiB; 0 where /proc is absent.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let a = args()?;
    match a.backend.as_str() {
        "cpu" => run::<lrem_trainer::backend::CpuAutodiff>(&a, &Default::default()),
        #[cfg(feature = "cuda")]
        "cuda-f32" => run::<burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>>(&a, &Default::default()),
        #[cfg(feature = "cuda")]
        "cuda-bf16" => run::<burn::backend::Autodiff<burn::backend::Cuda<half::bf16, i32>>>(&a, &Default::default()),
        other => bail!("backend `{other}` is not built in (cpu; cuda-f32 and cuda-bf16 with --features cuda)"),
    }
}
