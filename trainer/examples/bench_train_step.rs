//! Training-step throughput of the cold-start step on a random-weight decoder: tokens/s, step
//! time, and (on a GPU) model FLOPs utilisation. The workload, identical in
//! a batch of `batch` sequences of `seq` random tokens, the first half queries and the second
//! half their items; NTP over every query token plus InfoNCE between the last hidden states of
//! the two halves; backward; global clipping; one AdamW step.
//!
//! Model FLOPs per step: 6 · (block parameters) · all tokens + 6 · (hidden · vocab) · query
//! tokens (the LM head runs on NTP targets only); attention's score products are left out.
//!
//! `bench_train_step --shape smollm2-135m --batch 8 --seq 128 --steps 3 [--backend cpu|cuda-f32|cuda-bf16]
//! [--precision f32|bf16] [--fused 0|1] [--chunk 0] [--recompute 0|1] [--cublas 0|1] [--peak-tflops 989]`
//!
//! `--backend cuda-f32 --precision bf16` is the trainer's CUDA default (f32 weights and optimizer,
//! bf16 products: `model::precision`); `cuda-bf16` keeps everything in bf16. `--chunk` runs the
//! step through GradCache with graphs of that many sequences (the memory lever); `--recompute 1`
//! adds gradient checkpointing per decoder layer (a graph over one block at a time). `--cublas 1`
//! (feature `cublas`) runs the bf16 projections and LM head through cuBLAS. `--probe` first
//! runs one forward pass and prints each layer's largest |activation| and whether it is finite.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::optim::Optimizer;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use lrem_trainer::format::QuerySequence;
use lrem_trainer::model::decoder::Decoder;
use lrem_trainer::model::layers::{fuse_products, host};
use lrem_trainer::model::precision::{Precision, autocast};
use lrem_trainer::train::config::{LossConfig, OptimConfig};
use lrem_trainer::train::data::Example;
use lrem_trainer::train::optim::{adamw, clip_global_norm};
use lrem_trainer::train::step::{Memory, batch_gradients};

mod common;
use common::{FastRandom, parameters, peak_rss_mib, shape};

struct Args {
    shape: String,
    batch: usize,
    seq: usize,
    steps: usize,
    backend: String,
    precision: Precision,
    chunk: usize,
    recompute: bool,
    fused: bool,
    cublas: bool,
    probe: bool,
    peak_tflops: f64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        shape: "smollm2-135m".into(),
        batch: 8,
        seq: 128,
        steps: 3,
        backend: "cpu".into(),
        precision: Precision::F32,
        chunk: 0,
        recompute: false,
        fused: false,
        cublas: false,
        probe: false,
        peak_tflops: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--probe" {
            a.probe = true;
            continue;
        }
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--shape" => a.shape = value,
            "--batch" => a.batch = value.parse()?,
            "--seq" => a.seq = value.parse()?,
            "--steps" => a.steps = value.parse()?,
            "--backend" => a.backend = value,
            "--peak-tflops" => a.peak_tflops = value.parse()?,
            "--precision" => a.precision = serde_json::from_value(serde_json::Value::String(value))?,
            "--chunk" => a.chunk = value.parse()?,
            "--fused" => a.fused = value == "1",
            "--recompute" => a.recompute = value == "1",
            "--cublas" => a.cublas = value == "1",
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn run<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<()> {
    let config = shape(&a.shape)?;
    #[cfg(feature = "cublas")]
    lrem_trainer::model::cublas::enable(a.cublas);
    #[cfg(not(feature = "cublas"))]
    if a.cublas {
        bail!("--cublas 1 needs a build with the `cublas` feature");
    }
    let _products = autocast(a.precision.products::<B>(device)?);
    let _fused = fuse_products(a.fused);
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
    if a.probe {
        probe(&model, &examples);
    }
    let tokens = (a.batch * a.seq) as f64;
    let mut times = Vec::new();
    for step in 0..a.steps + 1 {
        let t = Instant::now();
        let (grads, parts) =
            batch_gradients(&model, &batch, &loss, Memory { chunk: a.chunk, recompute: a.recompute }, 1.0);
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
    #[cfg(feature = "cublas")]
    if a.cublas {
        // each is two host synchronisations: the count says what cuBLAS's speed has to pay for
        let products = lrem_trainer::model::cublas::products_run() / (a.steps as u64 + 1);
        eprintln!("cuBLAS products: {products} per step");
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
        "{{\"impl\": \"burn {} {:?}{}{}{}\", \"batch\": {}, \"seq\": {}, \"step_s\": {mean}, \"tok_s\": {}, \"peak_rss_mib\": {}}}",
        a.backend,
        a.precision,
        if a.fused { " fused" } else { "" },
        if a.recompute { " recompute" } else { "" },
        if a.cublas { " cublas" } else { "" },
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

/// One forward pass over the query sequences, each layer's output summarised.
fn probe<B: AutodiffBackend>(model: &Decoder<B>, examples: &[Example]) {
    let ids: Vec<Vec<u32>> = examples.iter().map(|e| e.query.ids.clone()).collect();
    let valid: Vec<Vec<bool>> = ids.iter().map(|s| vec![true; s.len()]).collect();
    let show = |what: String, x: &Tensor<B, 3>| {
        let values = host(x.clone());
        let finite = values.iter().all(|v| v.is_finite());
        let max = values.iter().filter(|v| v.is_finite()).fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("probe: {what}: max |x| {max:.3e}{}", if finite { "" } else { ", NOT FINITE" });
    };
    let hidden = model.forward_probed(&ids, &valid, None, &mut |layer, x| show(format!("layer {layer:>2}"), x));
    show("final norm".into(), &hidden);
}

fn main() -> Result<()> {
    lrem_trainer::backend::keep_freed_memory();
    lrem_trainer::backend::configure_kernel_caches(std::env::var_os("LREM_KERNEL_CACHE").map(Into::into));
    let a = args()?;
    common::on_backend!(a.backend.as_str(), run, &a)
}
