//! `lrem-train`: the trainer's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lrem_trainer::triples::{self, Split};

#[derive(Parser)]
#[command(name = "lrem-train", version, about = "LREM trainer: reads the pipeline's Parquet triples")]
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
    }
}

fn distinct(rows: &[triples::Triple]) -> usize {
    rows.iter().map(|t| t.query_id).collect::<std::collections::HashSet<_>>().len()
}
