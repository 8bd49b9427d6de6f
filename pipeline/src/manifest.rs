//! `manifest.json`: what a run directory holds. Per stage: fingerprint, state, funnel counts,
//! timings and model usage. Rewritten atomically after every stage (and at every state change),
//! so a killed run leaves the last consistent manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    pub fn load(run: &RunDir, shard: Option<Shard>) -> Result<Option<Self>, Error> {
        Self::load_from(&run.manifest(shard))
    }

    pub fn load_from(path: &Path) -> Result<Option<Self>, Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Usage(format!("{}: not a manifest this version can read: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the manifest atomically (a temporary file renamed over it).
    pub fn save(&self, run: &RunDir, shard: Option<Shard>) -> Result<(), Error> {
        let path = run.manifest(shard);
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        let temp = run.root().join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&temp, bytes).map_err(|e| Error::io(&temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))
    }
}
