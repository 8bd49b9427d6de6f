//! `manifest.json`: what a run directory holds. Per stage: fingerprint, state, funnel counts,
//! timings and model usage. Rewritten whole after every stage (and at every state change), so a
//! killed run leaves the last consistent manifest. What a stage wrote is in its commit marker
//! ([`lrem_schemas::commit`]); the manifest says which markers are the run's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lrem_schemas::commit;
use lrem_schemas::store::Storage;
use lrem_schemas::{RunDir, Shard};

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    /// Which revision of the scope's manifest this is (`manifests/<scope>/<revision>.json`).
    #[serde(skip)]
    pub revision: u64,
    /// The inputs the run read (so `lrem-pipeline sql --run` can register them).
    pub inputs: BTreeMap<String, PathBuf>,
    /// The configuration as loaded (endpoints name their key variables, never the keys).
    pub config: serde_json::Value,
    pub stages: BTreeMap<String, StageRecord>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    #[default]
    Pending,
    Running,
    Done,
}

/// Counts satisfy `rows_in == rows_out + Σ filtered + rows_failed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageRecord {
    pub fingerprint: String,
    pub state: StageState,
    pub rows_in: u64,
    pub rows_out: u64,
    pub filtered: BTreeMap<String, u64>,
    pub rows_failed: u64,
    pub seconds: f64,
    /// Endpoint counters during this stage (requests, cache hits, retries, tokens, …).
    pub usage: BTreeMap<String, serde_json::Value>,
}

impl StageRecord {
    pub fn reconciles(&self) -> bool {
        self.rows_in == self.rows_out + self.filtered.values().sum::<u64>() + self.rows_failed
    }
}

fn rank(state: StageState) -> u8 {
    match state {
        StageState::Pending => 0,
        StageState::Running => 1,
        StageState::Done => 2,
    }
}

impl Manifest {
    /// The newest revision of the unsharded run's manifest (`None`) or of one shard's, if any.
    pub async fn load(storage: &Storage, run: &RunDir, shard: Option<Shard>) -> Result<Option<Self>, Error> {
        let Some((revision, bytes)) = commit::read_manifest(storage, run, shard).await? else { return Ok(None) };
        let mut manifest: Self = serde_json::from_slice(&bytes).map_err(|e| {
            let at = storage.display(&run.manifest_versions(shard));
            Error::Usage(format!("{at}: revision {revision} is not a manifest this version can read: {e}"))
        })?;
        manifest.revision = revision;
        Ok(Some(manifest))
    }

    /// Writes the next revision, create-only. When another attempt of the same scope wrote that
    /// revision first, its records are merged in (per stage, the further state wins: done over
    /// running over pending) and the next one is tried, so no attempt loses another's progress.
    /// Then `manifest.json` (or the shard's) is replaced by a copy, for reading by hand.
    pub async fn save(&mut self, storage: &Storage, run: &RunDir, shard: Option<Shard>) -> Result<(), Error> {
        let dir = run.manifest_versions(shard);
        loop {
            let revision = self.revision + 1;
            let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
            let path = format!("{dir}/{}", commit::manifest_version_name(revision));
            if storage.create(&path, bytes.clone().into()).await? {
                self.revision = revision;
                let copy = storage.relative(run, &run.manifest(shard));
                return Ok(storage.write(&copy, bytes.into()).await?);
            }
            let theirs = Self::load(storage, run, shard).await?.unwrap_or_default();
            tracing::info!(revision = theirs.revision, "another attempt wrote the manifest; merging");
            for (stage, record) in theirs.stages {
                match self.stages.get_mut(&stage) {
                    None => {
                        self.stages.insert(stage, record);
                    }
                    // A record of another fingerprint is another config's: this attempt's stands.
                    Some(ours) if ours.fingerprint == record.fingerprint && rank(record.state) > rank(ours.state) => {
                        *ours = record;
                    }
                    Some(_) => {}
                }
            }
            self.revision = theirs.revision;
        }
    }
}

/// Every manifest of a run: the unsharded one and each shard's, to tell whether a stage is done
/// for the whole run and which shards lack it.
#[derive(Debug, Default)]
pub struct Ledger {
    pub unsharded: Manifest,
    pub shards: BTreeMap<Shard, Manifest>,
}

impl Ledger {
    pub async fn load(storage: &Storage, run: &RunDir) -> Result<Self, Error> {
        let mut ledger = Self::default();
        for scope in commit::manifest_scopes(storage).await? {
            let manifest = Manifest::load(storage, run, scope).await?;
            match (scope, manifest) {
                (None, m) => ledger.unsharded = m.unwrap_or_default(),
                (Some(shard), Some(m)) => {
                    ledger.shards.insert(shard, m);
                }
                (Some(_), None) => {}
            }
        }
        Ok(ledger)
    }

    /// Whether `stage` is done at `fingerprint` for the whole run: unsharded, or by every shard of
    /// one count.
    pub fn complete(&self, stage: &str, fingerprint: &str) -> bool {
        let done = |m: &Manifest| {
            m.stages.get(stage).is_some_and(|r| r.state == StageState::Done && r.fingerprint == fingerprint)
        };
        done(&self.unsharded)
            || self
                .counts()
                .into_iter()
                .any(|n| (0..n).all(|i| self.shards.get(&Shard { index: i, count: n }).is_some_and(done)))
    }

    /// The shard counts the run's shard manifests name.
    pub fn counts(&self) -> Vec<u32> {
        let mut counts: Vec<u32> = self.shards.keys().map(|s| s.count).collect();
        counts.sort();
        counts.dedup();
        counts
    }

    /// Per shard of `count`: the state `stage` has there (`None`: the shard never started it).
    pub fn states(&self, stage: &str, count: u32) -> Vec<Option<StageState>> {
        (0..count)
            .map(|index| self.shards.get(&Shard { index, count }).and_then(|m| m.stages.get(stage)).map(|r| r.state))
            .collect()
    }
}
