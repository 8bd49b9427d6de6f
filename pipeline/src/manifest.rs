//! `manifest.json`: what a run directory holds. Per stage: fingerprint, state, funnel counts,
//! timings and model usage. Rewritten whole after every stage (and at every state change), so a
//! killed run leaves the last consistent manifest. What a stage wrote is in its commit marker
//! ([`lrem_schemas::commit`]); the manifest says which markers are the run's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lrem_schemas::store::Storage;
use lrem_schemas::{RunDir, Shard};

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
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

impl Manifest {
    /// The manifest of the shared stages (`None`) or of one shard's per-query stages, if any.
    pub async fn load(storage: &Storage, run: &RunDir, shard: Option<Shard>) -> Result<Option<Self>, Error> {
        let path = storage.relative(run, &run.manifest(shard));
        let Some(bytes) = storage.read(&path).await? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Usage(format!("{}: not a manifest this version can read: {e}", storage.display(&path))))
    }

    /// Writes the manifest (one object, replaced whole: a reader sees the old or the new one).
    pub async fn save(&self, storage: &Storage, run: &RunDir, shard: Option<Shard>) -> Result<(), Error> {
        let path = storage.relative(run, &run.manifest(shard));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(storage.write(&path, bytes.into()).await?)
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
        let mut ledger =
            Self { unsharded: Manifest::load(storage, run, None).await?.unwrap_or_default(), ..Default::default() };
        for name in storage.children("").await? {
            if let Some(shard) = Shard::from_manifest_name(&name)
                && let Some(manifest) = Manifest::load(storage, run, Some(shard)).await?
            {
                ledger.shards.insert(shard, manifest);
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
