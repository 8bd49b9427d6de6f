//! `manifest.json`: what a run directory holds. Per stage: fingerprint, state, funnel counts,
//! timings and model usage. Rewritten atomically after every stage (and at every state change),
//! so a killed run leaves the last consistent manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::stages::Shard;

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
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("manifest.json")
    }

    pub fn load(run_dir: &Path) -> Result<Option<Self>, Error> {
        Self::load_from(&Self::path(run_dir))
    }

    fn load_from(path: &Path) -> Result<Option<Self>, Error> {
        let path = path.to_owned();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Usage(format!("{}: not a manifest this version can read: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// The manifest of one shard's per-query stages (`manifest.shard-i-of-n.json`).
    pub fn shard_path(run_dir: &Path, shard: Shard) -> PathBuf {
        run_dir.join(format!("manifest.shard-{}-of-{}.json", shard.index, shard.count))
    }

    pub fn load_shard(run_dir: &Path, shard: Shard) -> Result<Option<Self>, Error> {
        Self::load_from(&Self::shard_path(run_dir, shard))
    }

    pub fn save(&self, run_dir: &Path) -> Result<(), Error> {
        self.save_as(run_dir, None)
    }

    pub fn save_as(&self, run_dir: &Path, shard: Option<Shard>) -> Result<(), Error> {
        let path = match shard {
            None => Self::path(run_dir),
            Some(s) => Self::shard_path(run_dir, s),
        };
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let temp = run_dir.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&temp, bytes).map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))
    }
}
