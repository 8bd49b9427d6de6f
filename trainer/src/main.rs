//! `lrem-train`: the trainer's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lrem_trainer::backend::{Inference, Train};
use lrem_trainer::dist::{Launch, ProcessGroup};
use lrem_trainer::eval::EvalSpec;
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::bert::SentenceEncoder;
use lrem_trainer::model::generate::{SamplingParams, generate};
use lrem_trainer::model::penalties::Penalties;
use lrem_trainer::model::tokenizer::ChatMessage;
use lrem_trainer::train::config::TrainConfig;
use lrem_trainer::train::{RunOptions, cold_start};
use lrem_trainer::triples::{self, Split};

#[derive(Parser)]
#[command(
    name = "lrem-train",
    version,
    about = "LREM trainer: models, generation, embeddings, and the pipeline's triples"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for every model product (serve, generate, eval, training); default
    /// `RAYON_NUM_THREADS`, else the cores available to this process (cgroup quota aware).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Count the triples of a run directory per split and show a few.
    Data {
        #[arg(long)]
        run: PathBuf,
        #[arg(long, default_value_t = 3)]
        show: usize,
    },
    /// Generate text with a decoder (`.gguf` file or Hugging Face folder).
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Wrap the prompt as a user message in the model's chat template.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Completions of the prompt (they share its prefill).
        #[arg(long, default_value_t = 1)]
        n: usize,
        /// Repetition controls: `off`, or `+`-joined `presence=P`, `frequency=F`,
        /// `repetition=R`, `no-repeat-ngram=N`.
        #[arg(long, default_value = "off")]
        penalties: Penalties,
    },
    /// Serve models over the OpenAI protocol (`/v1/chat/completions`, `/v1/embeddings`).
    Serve(lrem_trainer::serve::ServeConfig),
    /// Cold start: NTP on the CoT + InfoNCE on `<emb>` over a run's `triples_cold_start`.
    ColdStart {
        #[arg(long)]
        config: PathBuf,
        /// Where checkpoints, metrics, curves and the final model go.
        #[arg(long)]
        run_dir: PathBuf,
        /// Continue from the newest checkpoint in --run-dir.
        #[arg(long)]
        resume: bool,
        /// Stop after this many optimizer steps (checkpointed), as an interruption would.
        #[arg(long)]
        stop_after: Option<usize>,
        /// Override `loss.ntp_weight` (λ1), e.g. 0 for the CoT-as-input ablation.
        #[arg(long)]
        ntp_weight: Option<f64>,
        /// Train the fair direct-embedder baseline instead: the same pairs and schedule, the
        /// query embedded as `prompt<emb>` with no CoT, InfoNCE only (`data.cot = false`, λ1 = 0).
        #[arg(long, conflicts_with = "ntp_weight")]
        direct: bool,
        #[command(flatten)]
        dist: DistArgs,
    },
    /// RL (GRPO) from a cold-start model over a run's triples (`triples_rl` by default).
    Rl {
        #[arg(long)]
        config: PathBuf,
        /// The cold-start model folder (overrides the config's `model`).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Where checkpoints, metrics and the final model go.
        #[arg(long)]
        run_dir: PathBuf,
        #[arg(long)]
        resume: bool,
        #[arg(long)]
        stop_after: Option<usize>,
        /// Override `loss.infonce_weight` (γ2), e.g. 0 for RL on the rewards alone.
        #[arg(long)]
        infonce_weight: Option<f64>,
    },
    /// Retrieval evaluation of trained models against the direct embedder and the base decoder.
    Eval {
        #[command(flatten)]
        spec: EvalSpec,
        #[arg(long)]
        out: PathBuf,
    },
    /// Embed texts with a sentence-transformers BERT folder; prints one JSON array per text.
    Embed {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        text: Vec<String>,
    },
}

/// Data-parallel training: one process per GPU (or CPU socket), each on a share of every batch.
/// Unset flags come from torchrun's variables, then Slurm's; the default is one process.
#[derive(clap::Args)]
struct DistArgs {
    /// Processes in the run (default `WORLD_SIZE`, else srun's `SLURM_STEP_NUM_TASKS`, else 1).
    #[arg(long)]
    world_size: Option<usize>,
    /// This process's rank, from 0 (default `RANK`, else `SLURM_PROCID`, else 0).
    #[arg(long)]
    rank: Option<usize>,
    /// The rank's index on its node, which picks its GPU (default `LOCAL_RANK`, else
    /// `SLURM_LOCALID`, else the rank; modulo the GPUs the process sees).
    #[arg(long)]
    local_rank: Option<usize>,
    /// `HOST:PORT` of rank 0 (default `MASTER_ADDR:MASTER_PORT`, port 29500); rank 0 listens on
    /// that port on every interface.
    #[arg(long)]
    master: Option<String>,
}

impl DistArgs {
    /// Joins the run's process group (a single process joins none) and picks this rank's device.
    fn join(self) -> anyhow::Result<(std::sync::Arc<ProcessGroup>, lrem_trainer::backend::Device)> {
        let launch = Launch::from_env(self.world_size, self.rank, self.local_rank, self.master)?;
        let timeout = std::env::var("LREM_DIST_TIMEOUT_S").ok().and_then(|v| v.parse().ok()).unwrap_or(1800);
        if launch.world_size > 1 {
            tracing::info!(rank = launch.rank, world = launch.world_size, master = ?launch.master, "joining the process group");
        }
        let group = ProcessGroup::connect(&launch, std::time::Duration::from_secs(timeout))?;
        Ok((std::sync::Arc::new(group), lrem_trainer::backend::device(launch.local_rank)))
    }
}

fn main() -> ExitCode {
    // The library logs with tracing (what it serves, where it resumes, the evaluation's steps).
    let cli = Cli::parse();
    lrem_trainer::backend::keep_freed_memory();
    lrem_trainer::backend::configure_kernel_caches(std::env::var_os("LREM_KERNEL_CACHE").map(Into::into));
    #[cfg(feature = "cublas")]
    lrem_trainer::model::cublas::enable(std::env::var("LREM_CUBLAS").is_ok_and(|v| v == "1"));
    let threads = lrem_trainer::backend::configure_threads(cli.threads);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "lrem_trainer=info,warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(terminal).init();
    tracing::debug!(threads, "CPU threads");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A flag the first Ctrl-C sets (training checkpoints after the step in progress and stops);
/// a second Ctrl-C exits at once.
fn on_ctrl_c() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_io().build() else { return };
        runtime.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupt: checkpointing after the step in progress (Ctrl-C again to quit now)");
                set.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    });
    flag
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Data { run, show } => {
            for split in [Split::ColdStart, Split::Rl] {
                let rows = triples::read(&run, split)?;
                println!("{}: {} triples over {} queries", split.table(), rows.len(), distinct(&rows));
                for t in rows.iter().take(show) {
                    println!("  {:?} <think>{}</think> -> {:?}", t.query, t.cot, t.title);
                }
            }
            Ok(())
        }
        Command::Generate { model, prompt, chat, max_tokens, temperature, top_k, top_p, seed, n, penalties } => {
            let device = Default::default();
            let lm = LanguageModel::<Inference>::load_quantized(&model, &device)?;
            let text = if chat {
                lm.tokenizer.render_chat(&[ChatMessage { role: "user".into(), content: prompt }], true)?
            } else {
                prompt
            };
            let ids = lm.tokenizer.encode(&text, true)?;
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                max_tokens,
                seed,
                n,
                stop_ids: lm.tokenizer.stop_ids(),
                stop: Vec::new(),
                top_logprobs: 0,
                constraint: None,
                keep_stop: false,
                penalties,
            };
            for c in generate(&lm.model, &lm.tokenizer, &[ids], &params)? {
                if n > 1 {
                    println!("--- sample {} ({}, {} tokens)", c.sample, c.finish_reason.as_str(), c.ids.len());
                }
                println!("{}", c.text);
            }
            Ok(())
        }
        Command::Serve(config) => Ok(tokio::runtime::Runtime::new()?.block_on(lrem_trainer::serve::serve(config))?),
        Command::ColdStart { config, run_dir, resume, stop_after, ntp_weight, direct, dist } => {
            // Joined first: a rank that then fails (a bad config) closes its link, and the
            // others stop at once instead of waiting for it.
            let (group, device) = dist.join()?;
            let mut config = TrainConfig::from_file(&config)?;
            if let Some(w) = ntp_weight {
                config.loss.ntp_weight = w;
            }
            if direct {
                config.data.cot = false;
                config.loss.ntp_weight = 0.0;
            }
            let options = RunOptions { resume, stop_after, interrupt: Some(on_ctrl_c()), progress: true, group };
            let outcome = cold_start::<Train>(&config, &run_dir, &options, &device)?;
            if outcome.interrupted {
                eprintln!(
                    "interrupted at step {} of {}: checkpointed in {}/checkpoints; continue with --resume",
                    outcome.state.step,
                    outcome.state.total_steps,
                    run_dir.display()
                );
                std::process::exit(130);
            }
            let last = outcome.records.last();
            println!(
                "cold start: {} of {} steps{}; metrics {}/metrics.jsonl, curves {}/curves.svg",
                outcome.state.step,
                outcome.state.total_steps,
                last.map_or(String::new(), |r| format!(
                    ", last loss {:.4} (InfoNCE {:.4}, NTP {:.4})",
                    r.loss, r.infonce, r.ntp
                )),
                run_dir.display(),
                run_dir.display()
            );
            if let Some(dir) = outcome.model_dir {
                println!("model: {}", dir.display());
            }
            Ok(())
        }
        Command::Rl { config, from, run_dir, resume, stop_after, infonce_weight } => {
            let launch = Launch::from_env(None, None, None, None)?;
            if launch.world_size > 1 {
                anyhow::bail!(
                    "rl runs as one process, and this one is rank {} of {} (WORLD_SIZE or srun): start it once",
                    launch.rank,
                    launch.world_size
                );
            }
            let mut config = lrem_trainer::rl::config::RlConfig::from_file(&config)?;
            if let Some(from) = from {
                config.model = from;
            }
            if let Some(w) = infonce_weight {
                config.loss.infonce_weight = w;
            }
            let options =
                RunOptions { resume, stop_after, interrupt: Some(on_ctrl_c()), progress: false, ..Default::default() };
            let outcome = lrem_trainer::rl::run::rl::<Train>(&config, &run_dir, &options, &Default::default())?;
            let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len().max(1) as f64;
            let n = outcome.rewards.len().min(5);
            println!(
                "rl: {} of {} steps; mean reward first {n} steps {:.3}, last {n} {:.3}; metrics {}/metrics.jsonl",
                outcome.state.step,
                outcome.state.total_steps,
                mean(&outcome.rewards[..n]),
                mean(&outcome.rewards[outcome.rewards.len() - n..]),
                run_dir.display()
            );
            match outcome.model_dir {
                Some(dir) => println!("model: {}", dir.display()),
                None if outcome.interrupted => {
                    eprintln!("interrupted at step {}: checkpointed; continue with --resume", outcome.state.step);
                    std::process::exit(130);
                }
                None => println!("stopped at step {}: continue with --resume", outcome.state.step),
            }
            Ok(())
        }
        Command::Eval { spec, out } => {
            lrem_trainer::eval::run::<Inference>(&spec, &out, &Default::default())?;
            println!("report: {}/report.md", out.display());
            Ok(())
        }
        Command::Embed { model, text } => {
            let encoder = SentenceEncoder::<Inference>::load(&model, &Default::default())?;
            let texts: Vec<&str> = text.iter().map(String::as_str).collect();
            for v in encoder.embed(&texts)? {
                println!("{}", serde_json::to_string(&v)?);
            }
            Ok(())
        }
    }
}

fn distinct(rows: &[triples::Triple]) -> usize {
    rows.iter().map(|t| t.query_id).collect::<std::collections::HashSet<_>>().len()
}
