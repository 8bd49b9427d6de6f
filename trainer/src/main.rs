//! `lrem-train`: the trainer's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lrem_trainer::backend::Inference;
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::bert::SentenceEncoder;
use lrem_trainer::model::generate::{SamplingParams, generate};
use lrem_trainer::model::tokenizer::ChatMessage;
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
    },
    /// Serve models over the OpenAI protocol (`/v1/chat/completions`, `/v1/embeddings`).
    Serve {
        /// A decoder for chat completions (`.gguf` file or Hugging Face folder).
        #[arg(long)]
        chat: Option<PathBuf>,
        /// The name clients use for it (default: the file name up to its first dot).
        #[arg(long)]
        chat_name: Option<String>,
        /// A sentence-transformers folder for embeddings.
        #[arg(long)]
        embed: Option<PathBuf>,
        /// The name clients use for it (default: the folder name).
        #[arg(long)]
        embed_name: Option<String>,
        #[arg(long, default_value = "127.0.0.1:8765")]
        addr: std::net::SocketAddr,
        /// An environment variable holding the bearer token; required off loopback.
        #[arg(long)]
        api_key_env: Option<String>,
        /// Sequences decoded together (continuous batching).
        #[arg(long, default_value_t = 16)]
        max_batch: usize,
        /// Requests waiting per model before 503.
        #[arg(long, default_value_t = 1024)]
        queue: usize,
        #[arg(long, default_value_t = 4 << 20)]
        max_body_bytes: usize,
    },
    /// Embed texts with a sentence-transformers BERT folder; prints one JSON array per text.
    Embed {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        text: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        Command::Generate { model, prompt, chat, max_tokens, temperature, top_k, top_p, seed, n } => {
            let device = Default::default();
            let lm = LanguageModel::<Inference>::load(&model, &device)?;
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
            };
            for c in generate(&lm.model, &lm.tokenizer, &[ids], &params)? {
                if n > 1 {
                    println!("--- sample {} ({}, {} tokens)", c.sample, c.finish_reason.as_str(), c.ids.len());
                }
                println!("{}", c.text);
            }
            Ok(())
        }
        Command::Serve { chat, chat_name, embed, embed_name, addr, api_key_env, max_batch, queue, max_body_bytes } => {
            let config = lrem_trainer::serve::ServeConfig {
                chat,
                chat_name,
                embed,
                embed_name,
                addr,
                api_key_env,
                max_batch,
                queue,
                max_body_bytes,
            };
            tokio::runtime::Runtime::new()?.block_on(lrem_trainer::serve::serve(config))
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
