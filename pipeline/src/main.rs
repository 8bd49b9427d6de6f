//! `lrem-pipeline`: the command line of the triple engine.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use lrem_pipeline::datagen;
use lrem_pipeline::run::RunOptions;
use lrem_pipeline::run::manifest::{Manifest, StageState};
use lrem_pipeline::sql::{Inspector, OutputFormat, render};
use lrem_pipeline::stages::{self, DAG, Shard};
use lrem_schemas::ValidateOptions;
use lrem_schemas::store::Storage;

#[derive(Parser)]
#[command(name = "lrem-pipeline", version, about = "Turns a query log and a catalogue into <query, CoT, item> triples")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Instrument {
    /// Serve the reference teacher: an OpenAI-compatible chat endpoint that answers the reasoning
    /// and keyword prompts from the world's knowledge, for measuring what a teacher that knows
    /// the shop gives. A measurement instrument: never a default, never used at evaluation time.
    Teacher {
        /// The knowledge table (default: the committed data_samples/world.toml).
        #[arg(long)]
        world: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8766")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Generate the deterministic sample world (items, query_log, qrels) at any scale.
    #[command(args_conflicts_with_subcommands = true)]
    Datagen {
        #[command(subcommand)]
        instrument: Option<Instrument>,
        /// Output directory.
        #[arg(long, default_value = "data_samples")]
        out: PathBuf,
        #[arg(long, default_value_t = datagen::Args::default().seed)]
        seed: u64,
        #[arg(long, default_value_t = datagen::Args::default().items)]
        items: usize,
        /// Distinct queries (every hard query of the world, the rest head queries).
        #[arg(long, default_value_t = datagen::Args::default().queries)]
        queries: usize,
        #[arg(long, default_value_t = datagen::Args::default().log_rows)]
        log_rows: usize,
    },
    /// Check inputs against their schemas and report every problem.
    Validate {
        /// A directory holding inputs (items, query_log, qrels as .parquet/.csv/.jsonl).
        #[arg(long, conflicts_with_all = ["table", "path"])]
        run: Option<PathBuf>,
        /// Validate one file as this table.
        #[arg(long, requires = "path")]
        table: Option<String>,
        path: Option<PathBuf>,
        /// Longest accepted text value, in bytes.
        #[arg(long, default_value_t = ValidateOptions::default().max_text_bytes)]
        max_text_bytes: usize,
    },
    /// Run the DAG: from the query log and catalogue to Parquet triples.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `run_dir` of the config.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Stop after this stage.
        #[arg(long, conflicts_with = "only")]
        until: Option<String>,
        /// Run only this stage (its upstream stages must be done).
        #[arg(long)]
        only: Option<String>,
        /// Run the sharded stages of shard i of n (items with `item_id mod n == i`, queries with
        /// `query_id % n == i`); what they read must be complete (see docs/cluster.md, phases).
        /// Without it, a Slurm array task (`SLURM_ARRAY_TASK_ID`) or a Kubernetes
        /// Indexed Job pod (`JOB_COMPLETION_INDEX` with `LREM_SHARD_COUNT`) runs the shard its
        /// batch system gave it; `--shard none` runs unsharded even there.
        #[arg(long)]
        shard: Option<String>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// For batch systems: no progress bars; one JSON line per event on standard error.
        #[arg(long)]
        log_json: bool,
    },
    /// The state and funnel of a run directory (a path or an s3:// URL), from its manifests.
    Status {
        #[arg(long)]
        run: PathBuf,
    },
    /// Write (and with --submit, submit) the Slurm jobs of a sharded run: one per phase, each after
    /// the one before succeeded; a sharded phase is an array of --shards tasks.
    Slurm {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        shards: u32,
        #[arg(long)]
        partition: Option<String>,
        /// Attempts after the first, per task (a failed task requeues itself).
        #[arg(long, default_value_t = 2)]
        retries: u32,
        /// Where the scripts go.
        #[arg(long, default_value = "lrem-slurm")]
        out: PathBuf,
        /// Submit them (`sbatch`) and print the job ids.
        #[arg(long)]
        submit: bool,
    },
    /// Write the Kubernetes manifests of a sharded run: the config and a Job per phase (an Indexed
    /// Job of --shards pods for a sharded one).
    K8s {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        shards: u32,
        #[arg(long)]
        image: String,
        #[arg(long)]
        namespace: Option<String>,
        /// A Secret whose keys become the pods' environment (storage credentials, API keys).
        #[arg(long, default_value = "lrem-env")]
        secret: String,
        /// The binary's path in the image.
        #[arg(long, default_value = "lrem-pipeline")]
        binary: String,
        #[arg(long, default_value_t = 2)]
        retries: u32,
        #[arg(long, default_value = "lrem-k8s")]
        out: PathBuf,
    },
    /// Delete the files no commit names: killed or losing attempts, outputs of an old config.
    Gc {
        #[arg(long)]
        run: PathBuf,
        /// Keep unnamed files younger than this many minutes (an attempt may still be writing).
        #[arg(long, default_value_t = 60)]
        grace_minutes: u64,
    },
    /// Read-only SQL over a run directory (or the inputs alone).
    Sql {
        #[arg(long)]
        run: PathBuf,
        /// Statements to run; without -e or --file, read them from standard input.
        #[arg(short = 'e', long = "execute", conflicts_with = "file")]
        execute: Option<String>,
        /// A file of statements, e.g. sql/inspect/funnel.sql.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = matches!(cli.command, Command::Run { log_json: true, .. });
    // Without a terminal there are no progress bars: the stages' start and end lines say what
    // the run is doing instead (CI logs, `make triples | tee`).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| match (json, terminal) {
        (true, _) => "info".into(),
        (false, false) => "lrem_pipeline=info,warn".into(),
        (false, true) => "warn".into(),
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(terminal);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Datagen { instrument: Some(Instrument::Teacher { world, addr }), .. } => {
            let text = match world {
                Some(path) => std::fs::read_to_string(&path).with_context(|| format!("--world {}", path.display()))?,
                None => datagen::world::WORLD_TOML.to_string(),
            };
            let world = datagen::world::World::load(&text).map_err(anyhow::Error::msg)?;
            let teacher = datagen::teacher::Teacher::new(&world).map_err(anyhow::Error::msg)?;
            tokio::runtime::Runtime::new()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--addr {addr}"))?;
                eprintln!(
                    "reference teacher (a measurement instrument: answers from world.toml) as model `{}` on http://{addr}/v1",
                    datagen::teacher::MODEL
                );
                axum::serve(listener, datagen::teacher::router(teacher)).await?;
                anyhow::Ok(())
            })
        }
        Command::Datagen { out, seed, items, queries, log_rows, .. } => {
            let s = datagen::generate(&datagen::Args { seed, items, queries, log_rows }, &out)?;
            println!(
                "{} items in {} categories, {} queries ({} head, {} hard), {} log rows over {} days, {} qrels",
                s.items,
                s.categories,
                s.head_queries + s.hard_queries,
                s.head_queries,
                s.hard_queries,
                s.log_rows,
                s.days,
                s.qrels
            );
            for f in s.files {
                println!("wrote {}", f.display());
            }
            Ok(())
        }
        Command::Validate { run, table, path, max_text_bytes } => {
            let options = ValidateOptions { max_text_bytes };
            if let (Some(table), Some(path)) = (table, path) {
                let spec = lrem_schemas::table(&table)?;
                let rows = lrem_schemas::validate(&path, &spec, &options)?;
                println!("{}: {rows} rows, valid `{table}`", path.display());
                return Ok(());
            }
            let dir = run.context("give --run DIR, or --table NAME PATH")?;
            validate_dir(&dir, &options)
        }
        Command::Run { config, run_dir, until, only, shard, quiet, log_json } => {
            let options = RunOptions {
                shard: choose_shard(shard.as_deref())?,
                run_dir,
                until: until.as_deref().map(stages::find).transpose()?,
                only: only.as_deref().map(stages::find).transpose()?,
                quiet: quiet || log_json,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let (run_dir, manifest) = runtime.block_on(lrem_pipeline::run::run(&config, options))?;
            print!("{}", funnel(&manifest));
            println!("tables: {}/tables/<stage>/*.parquet", run_dir.display());
            println!("inspect: lrem-pipeline sql --run {} --file sql/inspect/funnel.sql", run_dir.display());
            Ok(())
        }
        Command::Slurm { config, shards, partition, retries, out, submit } => {
            let plan = lrem_pipeline::cluster::Plan::new(&config, shards, retries)?;
            let logs = std::path::absolute(out.join("logs"))?;
            let files = lrem_pipeline::cluster::slurm(&plan, &lrem_pipeline::cluster::Slurm { partition, logs });
            lrem_pipeline::cluster::write(&out, &files)?;
            println!("wrote {} batch scripts and submit.sh to {}", files.len() - 1, out.display());
            if submit {
                let o = std::process::Command::new(out.join("submit.sh")).output().context("running submit.sh")?;
                anyhow::ensure!(o.status.success(), "submit.sh: {}", String::from_utf8_lossy(&o.stderr));
                print!("{}", String::from_utf8_lossy(&o.stdout));
            }
            Ok(())
        }
        Command::K8s { config, shards, image, namespace, secret, binary, retries, out } => {
            let plan = lrem_pipeline::cluster::Plan::new(&config, shards, retries)?;
            let options = lrem_pipeline::cluster::K8s { image, namespace, secret, binary };
            lrem_pipeline::cluster::write(&out, &lrem_pipeline::cluster::k8s(&plan, &options)?)?;
            println!("wrote the manifests and apply.sh to {}", out.display());
            Ok(())
        }
        Command::Status { run } => tokio::runtime::Runtime::new()?.block_on(status(run)),
        Command::Gc { run, grace_minutes } => tokio::runtime::Runtime::new()?.block_on(async {
            let storage = Storage::open(&run.to_string_lossy())?;
            let grace = std::time::Duration::from_secs(grace_minutes * 60);
            let done = lrem_pipeline::gc::collect(&storage, &storage.run_dir(), grace).await?;
            println!(
                "deleted {} files ({:.1} MB) no commit names and {} markers of earlier configs; kept {} committed, {} younger than {grace_minutes} min",
                done.deleted,
                done.deleted_bytes as f64 / 1e6,
                done.markers,
                done.kept,
                done.young
            );
            Ok(())
        }),
        Command::Sql { run, execute, file, format } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(sql(run, execute, file, format))
        }
    }
}

/// The shared manifest's funnel, then each shard's, in name order.
async fn status(run: PathBuf) -> Result<()> {
    let storage = Storage::open(&run.to_string_lossy())?;
    let layout = storage.run_dir();
    let manifest = Manifest::load(&storage, &layout, None)
        .await?
        .with_context(|| format!("{}: no manifest.json (not a run directory)", run.display()))?;
    print!("{}", funnel(&manifest));
    let ledger = lrem_pipeline::manifest::Ledger::load(&storage, &layout).await?;
    for (shard, manifest) in &ledger.shards {
        println!("\nshard {shard}");
        print!("{}", funnel(manifest));
    }
    // Per sharded stage: which shards have it, which left it running (killed or failed), which
    // never started it.
    for count in ledger.counts() {
        println!("\nshards of {count}:");
        for stage in DAG.iter().filter(|s| s.scope() != lrem_pipeline::stages::Scope::Once) {
            let states = ledger.states(stage.name(), count);
            let which = |want: Option<StageState>| -> Vec<String> {
                states.iter().enumerate().filter(|(_, s)| **s == want).map(|(i, _)| i.to_string()).collect()
            };
            let (done, running, missing) =
                (which(Some(StageState::Done)), which(Some(StageState::Running)), which(None));
            let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(",") };
            println!(
                "{:<18} done {:>3}/{count}  running or failed: {:<12} missing: {}",
                stage.name(),
                done.len(),
                list(&running),
                list(&missing)
            );
        }
    }
    Ok(())
}

/// Validates every input found in `dir`; all problems of all inputs are reported together.
fn validate_dir(dir: &std::path::Path, options: &ValidateOptions) -> Result<()> {
    let mut failed = Vec::new();
    for spec in lrem_schemas::all_tables().into_iter().filter(|t| t.kind == lrem_schemas::TableKind::Input) {
        let path = lrem_schemas::run_dir::INPUT_EXTENSIONS
            .iter()
            .map(|e| dir.join(format!("{}.{e}", spec.name)))
            .find(|p| p.exists());
        let Some(path) = path else {
            if !spec.is_optional_input() {
                failed.push(format!("the `{}` input is missing from {}", spec.name, dir.display()));
            }
            continue;
        };
        match lrem_schemas::validate(&path, &spec, options) {
            Ok(rows) => println!("{}: {rows} rows, valid `{}`", path.display(), spec.name),
            Err(e) => failed.push(e.to_string()),
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("\n"));
    Ok(())
}

async fn sql(run: PathBuf, execute: Option<String>, file: Option<PathBuf>, format: OutputFormat) -> Result<()> {
    let inspector = Inspector::open(&run).await?;
    let text = match (execute, file) {
        (Some(sql), _) => sql,
        (None, Some(f)) => std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?,
        (None, None) => return interactive(&inspector).await,
    };
    print_results(&inspector, &text, format).await
}

async fn print_results(inspector: &Inspector, text: &str, format: OutputFormat) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    for batches in inspector.query(text).await? {
        stdout.write_all(render(&batches, format)?.as_bytes())?;
    }
    stdout.flush()?;
    Ok(())
}

/// Statements end with `;`. On a terminal each gets a prompt and errors do not end the session.
async fn interactive(inspector: &Inspector) -> Result<()> {
    let tty = std::io::stdin().is_terminal();
    let prompt = |fresh: bool| {
        if tty {
            eprint!("{}", if fresh { "lrem> " } else { "  ... " });
        }
    };
    let mut pending = String::new();
    prompt(true);
    for line in std::io::stdin().lock().lines() {
        pending.push_str(&line?);
        pending.push('\n');
        if pending.trim_end().ends_with(';') {
            let result = print_results(inspector, &pending, OutputFormat::Table).await;
            pending.clear();
            match result {
                Err(e) if tty => eprintln!("error: {e:#}"),
                other => other?,
            }
        }
        prompt(pending.trim().is_empty());
    }
    if !pending.trim().is_empty() {
        print_results(inspector, &pending, OutputFormat::Table).await?;
    }
    Ok(())
}

/// The funnel of a run: per stage, rows in / out / filtered (by reason) / failed, and usage.
fn funnel(manifest: &Manifest) -> String {
    let mut out = format!(
        "{:<18} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>10}  filtered by reason\n",
        "stage", "state", "in", "out", "failed", "seconds", "requests", "cache hits"
    );
    for stage in DAG {
        let Some(r) = manifest.stages.get(stage.name()) else { continue };
        let sum = |k: &str| r.usage.values().map(|u| u[k].as_u64().unwrap_or(0)).sum::<u64>();
        let reasons: Vec<String> = r.filtered.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(
            "{:<18} {:>8} {:>10} {:>8} {:>8} {:>8.1} {:>9} {:>10}  {}\n",
            stage.name(),
            format!("{:?}", r.state).to_lowercase(),
            r.rows_in,
            r.rows_out,
            r.rows_failed,
            r.seconds,
            sum("requests"),
            sum("cache_hits"),
            reasons.join(" "),
        ));
    }
    out
}

/// `--shard i/n`, `--shard none`, or else the shard the batch system assigned (see `Run`).
fn choose_shard(flag: Option<&str>) -> Result<Option<Shard>, lrem_pipeline::Error> {
    let shard = match flag {
        Some("none") => None,
        Some(text) => Some(Shard::parse(text).map_err(lrem_pipeline::Error::Usage)?),
        None => Shard::from_env(|name| std::env::var(name).ok()).map_err(lrem_pipeline::Error::Usage)?,
    };
    if flag.is_none()
        && let Some(shard) = shard
    {
        tracing::info!(%shard, "shard from the batch system's environment");
    }
    Ok(shard)
}
