//! `lrem-pipeline gc`: deletes the files no commit of the run names (attempts that were killed,
//! lost a race, or were superseded by a changed config), like Delta Lake's `VACUUM`.
//!
//! Live: every file named by a marker (a stage's or a part's) of a stage the newest manifest of its
//! scope records at that fingerprint, in any state. Markers of other fingerprints (an earlier
//! config) older than the grace period are deleted first. Everything under `tables/` no live
//! marker names and older than the grace period goes: the grace keeps the files of an attempt
//! still writing (run `gc` with a grace longer than the longest stage, or between runs). Multipart uploads a killed process
//! left open are not objects and cannot be listed here: give the bucket a lifecycle rule
//! (`AbortIncompleteMultipartUpload`).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use lrem_schemas::RunDir;
use lrem_schemas::commit::{self, Commit, PartCommit};
use lrem_schemas::store::Storage;

use crate::Error;

/// What `gc` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub deleted: usize,
    pub deleted_bytes: u64,
    pub kept: usize,
    /// Unnamed files younger than the grace period.
    pub young: usize,
    /// Markers of stage versions no manifest records any more (an earlier config), deleted.
    pub markers: usize,
}

/// Deletes the files under `tables/` that no live marker names and that are older than `grace`.
/// A marker is live while the newest manifest of its scope records its stage at its fingerprint,
/// in any state (a stage committed just before its attempt died is recorded `running`); older
/// markers go first, then the files only they named.
pub async fn collect(storage: &Storage, run: &RunDir, grace: Duration) -> Result<Collected, Error> {
    let Some(recorded) = commit::recorded_stages(storage, run).await? else {
        return Err(Error::Usage(format!("{}: no manifest.json (not a run directory)", storage.location())));
    };
    let current: BTreeSet<(String, String, String)> =
        recorded.into_iter().map(|r| (commit::scope_name(r.shard), r.stage, r.fingerprint)).collect();
    let cutoff = SystemTime::now() - grace;
    let mut out = Collected::default();
    let mut live: BTreeSet<String> = BTreeSet::new();
    for object in storage.list("commits").await? {
        // commits/<stage>/<scope>/<fingerprint>.json or commits/<stage>/<scope>/<fingerprint>/part-<n>.json
        let parts: Vec<&str> = object.path.split('/').collect();
        let (stage, scope, fingerprint, part) = match parts[..] {
            ["commits", stage, scope, file] => (stage, scope, file.trim_end_matches(".json"), false),
            ["commits", stage, scope, fingerprint, _] => (stage, scope, fingerprint, true),
            _ => continue,
        };
        let key = (scope.to_string(), stage.to_string(), fingerprint.to_string());
        if !current.contains(&key) && object.modified <= cutoff {
            storage.delete(&object.path).await?;
            out.markers += 1;
            continue;
        }
        let files = if part {
            commit::read::<PartCommit>(storage, &object.path).await?.map(|m| m.files)
        } else {
            commit::read::<Commit>(storage, &object.path).await?.map(|m| m.files)
        };
        live.extend(files.into_iter().flatten().map(|f| f.path));
    }
    for object in storage.list("tables").await? {
        if live.contains(&object.path) {
            out.kept += 1;
        } else if object.modified > cutoff {
            out.young += 1;
        } else {
            storage.delete(&object.path).await?;
            out.deleted += 1;
            out.deleted_bytes += object.bytes;
        }
    }
    Ok(out)
}
