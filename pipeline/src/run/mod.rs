//! `lrem-pipeline run`: checks everything that can be checked before work starts (config, inputs,
//! endpoints and model names), then runs the stages in DAG order. A stage whose fingerprint and
//! state say it is done is skipped; one whose fingerprint changed is rerun (and so, through their
//! fingerprints, every stage below it); one left `running` by a killed process resumes from its
//! committed parts. Each stage is committed by a create-only marker ([`lrem_schemas::commit`]);
//! files it no longer names stay until `lrem-pipeline gc`.

pub use crate::manifest;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lrem_schemas::config::PipelineConfig;

use crate::Error;
use crate::client::ModelClient;
use crate::client::cache::Cache;
use crate::local_copy;
use crate::progress::Progress;
use crate::sql::Inspector;
use crate::stages::{self, DAG, Prompts, Scope, Shard, Stage, StageCtx};
use lrem_schemas::RunDir;
use lrem_schemas::commit::{self, Commit};
use lrem_schemas::store::{Storage, is_url};
use manifest::{Ledger, Manifest, StageRecord, StageState};

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub run_dir: Option<PathBuf>,
    /// Run the stages up to and including this one.
    pub until: Option<&'static dyn Stage>,
    /// Run only this stage (its upstream must be done).
    pub only: Option<&'static dyn Stage>,
    /// Run only the sharded stages, for this shard (what they read must be complete).
    pub shard: Option<Shard>,
    pub quiet: bool,
}

pub async fn run(config_path: &Path, options: RunOptions) -> Result<(PathBuf, Manifest), Error> {
    let config = PipelineConfig::load(config_path)?;
    let run_dir = options.run_dir.clone().unwrap_or_else(|| PathBuf::from(&config.run_dir));
    let location = run_dir.to_string_lossy().into_owned();
    let storage = Arc::new(Storage::open(&location)?);
    let mut selected: Vec<&'static dyn Stage> = match (options.only, options.until) {
        (Some(only), _) => vec![only],
        (None, Some(until)) => {
            DAG.iter().copied().filter(|s| stages::position(*s) <= stages::position(until)).collect()
        }
        (None, None) => DAG.to_vec(),
    };
    if options.shard.is_some() {
        selected.retain(|s| s.scope() != Scope::Once);
    }
    let inputs = validate_inputs(&config).await?;
    let prompts = Prompts::load(&config, Path::new("."))?;
    let clients = connect(&config, &selected).await?;
    let attempt = attempt_id();
    // The bucket exists, the credentials are accepted, create-only writes hold.
    storage.check_writable(&attempt).await?;
    // Everything that can be checked was: from here on, the run directory is written.
    let layout = storage.run_dir();
    let cache = Cache::open(&cache_path(&storage, &layout, options.shard))?;
    let clients = clients.into_iter().map(|(name, c)| (name, Arc::new(c.with_cache(cache.clone())))).collect();

    let mut manifest = Manifest::load(&storage, &layout, options.shard).await?.unwrap_or_default();
    manifest.version = 1;
    manifest.inputs = [("items", &config.inputs.items), ("query_log", &config.inputs.query_log)]
        .into_iter()
        .map(|(t, p)| (t.to_string(), p.clone()))
        .collect();
    manifest.config = serde_json::to_value(&config).map_err(|e| Error::Internal(e.to_string()))?;
    let fingerprints = all_fingerprints(&config, &prompts);
    // Before any work: every upstream is done, or is done by this run before it is read.
    let ledger = Ledger::load(&storage, &layout).await?;
    for stage in &selected {
        let will_run = |name: &str| {
            selected.iter().any(|s| s.name() == name)
                || manifest
                    .stages
                    .get(name)
                    .is_some_and(|r| r.state == StageState::Done && r.fingerprint == fingerprints[name])
        };
        check_upstream(*stage, options.shard, &ledger, &fingerprints, &will_run, config_path)?;
    }
    let tables = Inspector::open_run(storage.clone(), inputs).await?;
    tracing::info!(%attempt, run = %location, "attempt started");
    let mut ctx = StageCtx {
        shard: options.shard,
        run_dir: layout.clone(),
        storage: storage.clone(),
        attempt,
        fingerprint: String::new(),
        journal: Default::default(),
        config,
        prompts,
        tables,
        clients,
        progress: Progress::new(options.quiet),
    };

    for stage in selected {
        let fingerprint = fingerprints[stage.name()].clone();
        let previous = manifest.stages.get(stage.name()).cloned().unwrap_or_default();
        if previous.state == StageState::Done && previous.fingerprint == fingerprint {
            tracing::info!(stage = stage.name(), "up to date");
            continue;
        }
        let ledger = Ledger::load(&storage, &layout).await?;
        if ledger.complete(stage.name(), &fingerprint) {
            tracing::info!(stage = stage.name(), "done for the whole run (unsharded, or by every shard)");
            continue;
        }
        let marker = layout.commit(stage.name(), options.shard, &fingerprint);
        if let Some(theirs) = commit::read::<Commit>(&storage, &marker).await? {
            // Another attempt of this scope (a requeued task, a retried pod) committed it.
            tracing::info!(stage = stage.name(), attempt = %theirs.attempt, "committed by an earlier attempt");
            manifest.stages.insert(stage.name().into(), record_of(&theirs)?);
            manifest.save(&storage, &layout, options.shard).await?;
            ctx.tables.refresh().await?;
            continue;
        }
        let own = |name: &str| {
            manifest
                .stages
                .get(name)
                .is_some_and(|r| r.state == StageState::Done && r.fingerprint == fingerprints[name])
        };
        check_upstream(stage, options.shard, &ledger, &fingerprints, &own, config_path)?;
        manifest.stages.insert(
            stage.name().into(),
            StageRecord { fingerprint: fingerprint.clone(), state: StageState::Running, ..Default::default() },
        );
        manifest.save(&storage, &layout, options.shard).await?;
        ctx.fingerprint = fingerprint.clone();
        let record = run_one(stage, &mut ctx, fingerprint.clone()).await?;
        let ours = Commit {
            stage: stage.name().into(),
            fingerprint,
            attempt: ctx.attempt.clone(),
            files: ctx.journal.take(),
            record: serde_json::to_value(&record).map_err(|e| Error::Internal(e.to_string()))?,
        };
        let record = if commit::create(&storage, &marker, &ours).await? {
            record
        } else {
            let theirs = commit::read::<Commit>(&storage, &marker)
                .await?
                .ok_or_else(|| Error::Internal(format!("{marker}: refused as existing, then not found")))?;
            tracing::info!(
                stage = stage.name(),
                attempt = %theirs.attempt,
                "another attempt committed first; this attempt's files are left for `lrem-pipeline gc`"
            );
            record_of(&theirs)?
        };
        manifest.stages.insert(stage.name().into(), record);
        manifest.save(&storage, &layout, options.shard).await?;
        ctx.tables.refresh().await?;
    }
    Ok((run_dir, manifest))
}

/// That `stage` can read its upstream stages: each is done for the whole run, or is done (`own`)
/// by this run or shard where that suffices: a shard reads its own shard of an upstream of the
/// same scope, and anything else (the catalogue's embeddings for a query shard, a merge step's
/// table) only when complete.
fn check_upstream(
    stage: &dyn Stage,
    shard: Option<Shard>,
    ledger: &Ledger,
    fingerprints: &BTreeMap<&'static str, String>,
    own: &dyn Fn(&str) -> bool,
    config_path: &Path,
) -> Result<(), Error> {
    for upstream in stage.upstream() {
        let up = stages::find(upstream)?;
        let local = shard.is_none() || up.scope() == stage.scope();
        if ledger.complete(upstream, &fingerprints[*upstream]) || (own(upstream) && local) {
            continue;
        }
        let config = config_path.display();
        let how = match (up.scope(), shard) {
            (Scope::Once, Some(_)) => {
                format!(
                    "it runs once, unsharded, first: `lrem-pipeline run --config {config} --until {upstream} --shard none`"
                )
            }
            (_, Some(_)) => format!(
                "every shard must have it done first (`lrem-pipeline run --config {config} --until {upstream}` in each; `lrem-pipeline slurm` chains the phases)"
            ),
            (_, None) => format!("run without --only (or with --until {})", stage.name()),
        };
        return Err(Error::Usage(format!(
            "stage `{}` needs `{upstream}` done with the current config; {how}",
            stage.name()
        )));
    }
    Ok(())
}

/// A stage's manifest record, as its commit marker holds it.
fn record_of(commit: &Commit) -> Result<StageRecord, Error> {
    serde_json::from_value(commit.record.clone())
        .map_err(|e| Error::Usage(format!("the commit of `{}` by {}: {e}", commit.stage, commit.attempt)))
}

/// An id no other attempt has: the time, and 32 bits the OS seeded (std's `RandomState`), so two
/// attempts on two nodes in the same millisecond still differ.
fn attempt_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    format!("{millis:x}-{:08x}", random.finish() as u32)
}

/// The response cache: in the run directory when it is local; for an object store, a local file
/// per shard under the node's cache ([`local_copy::dir_for`]), keyed by the run's URL. A shard requeued on
/// another node starts with an empty cache: its requests are sent again, and greedy answers make
/// the same rows.
fn cache_path(storage: &Storage, run: &RunDir, shard: Option<Shard>) -> PathBuf {
    let cache = run.cache(shard);
    if storage.local_root().is_some() {
        return cache;
    }
    local_copy::dir_for(storage.location()).join(cache.file_name().expect("a file name"))
}

async fn run_one(stage: &dyn Stage, ctx: &mut StageCtx, fingerprint: String) -> Result<StageRecord, Error> {
    let started = Instant::now();
    // Said before the work, not only after: without a terminal there is no progress bar, and a
    // model stage can run for minutes.
    tracing::info!(stage = stage.name(), "stage started");
    let before: BTreeMap<String, serde_json::Value> =
        ctx.clients.iter().map(|(n, c)| (n.clone(), c.stats.snapshot())).collect();
    ctx.journal.take();
    let counts = stage.run(ctx).await?;
    let usage = stage
        .endpoints(&ctx.config)
        .into_iter()
        .filter_map(|name| {
            let after = ctx.clients.get(&name)?.stats.snapshot();
            Some((name.clone(), difference(&after, before.get(&name)?)))
        })
        .collect();
    let record = StageRecord {
        fingerprint,
        state: StageState::Done,
        rows_in: counts.rows_in,
        rows_out: counts.rows_out,
        filtered: counts.filtered,
        rows_failed: counts.rows_failed,
        seconds: started.elapsed().as_secs_f64(),
        usage,
    };
    tracing::info!(
        stage = stage.name(),
        rows_in = record.rows_in,
        rows_out = record.rows_out,
        rows_failed = record.rows_failed,
        filtered = ?record.filtered,
        seconds = record.seconds,
        "stage done"
    );
    if !record.reconciles() {
        return Err(Error::Internal(format!("stage {} does not reconcile: {record:?}", stage.name())));
    }
    Ok(record)
}

fn difference(after: &serde_json::Value, before: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in after.as_object().into_iter().flatten() {
        let d = v.as_u64().unwrap_or(0).saturating_sub(before[k].as_u64().unwrap_or(0));
        out.insert(k.clone(), d.into());
    }
    serde_json::Value::Object(out)
}

fn all_fingerprints(config: &PipelineConfig, prompts: &Prompts) -> BTreeMap<&'static str, String> {
    let mut out: BTreeMap<&'static str, String> = BTreeMap::new();
    for stage in DAG {
        let upstream: Vec<String> = stage.upstream().iter().map(|u| out[u].clone()).collect();
        out.insert(stage.name(), stages::fingerprint(stage, config, prompts, &upstream));
    }
    out
}

/// Validates both inputs (all problems of both are reported together).
/// An input on an object store is fetched first, into this node's cache ([`local_copy`]).
async fn validate_inputs(config: &PipelineConfig) -> Result<BTreeMap<String, PathBuf>, Error> {
    let mut problems = Vec::new();
    let mut inputs = BTreeMap::new();
    for (table, path) in [("items", &config.inputs.items), ("query_log", &config.inputs.query_log)] {
        let spec = lrem_schemas::table(table)?;
        let location = path.to_string_lossy();
        let local = if is_url(&location) { local_copy::fetch(&location).await? } else { path.clone() };
        if let Err(e) = lrem_schemas::validate(&local, &spec, &Default::default()) {
            problems.push(if is_url(&location) {
                format!("{location} (fetched to {}): {e}", local.display())
            } else {
                e.to_string()
            });
        }
        inputs.insert(table.to_string(), local);
    }
    if problems.is_empty() { Ok(inputs) } else { Err(Error::Usage(problems.join("\n"))) }
}

/// Clients for the endpoints the selected stages call, each checked against `GET /models`.
async fn connect(
    config: &PipelineConfig,
    selected: &[&'static dyn Stage],
) -> Result<BTreeMap<String, ModelClient>, Error> {
    let mut clients = BTreeMap::new();
    for name in selected.iter().flat_map(|s| s.endpoints(config)) {
        if clients.contains_key(&name) {
            continue;
        }
        let endpoint =
            config.endpoints.get(&name).ok_or_else(|| Error::Usage(format!("no [endpoints.{name}] in the config")))?;
        let client = ModelClient::new(&name, endpoint, None)?;
        client.preflight().await?;
        clients.insert(name, client);
    }
    Ok(clients)
}
