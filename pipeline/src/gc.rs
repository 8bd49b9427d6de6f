//! `lrem-pipeline gc`: deletes the files no commit of the run names (attempts that were killed,
//! lost a race, or were superseded by a changed config), like Delta Lake's `VACUUM`.
//!
//! Live: every file named by the stage marker of a stage a manifest records as done, and by the
//! part markers of every stage a manifest names at its current fingerprint (a `running` stage
//! resumes from those). Everything else under `tables/` that is older than the grace period goes:
//! the grace keeps the files of an attempt still writing. Multipart uploads a killed process
//! left open are not objects and cannot be listed here: give the bucket a lifecycle rule
//! (`AbortIncompleteMultipartUpload`).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use lrem_schemas::RunDir;
use lrem_schemas::commit::{self, PartCommit};
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
}

/// Deletes the files under `tables/` that no live marker names and that are older than `grace`.
pub async fn collect(storage: &Storage, run: &RunDir, grace: Duration) -> Result<Collected, Error> {
    let Some(recorded) = commit::recorded_stages(storage, run).await? else {
        return Err(Error::Usage(format!("{}: no manifest.json (not a run directory)", storage.location())));
    };
    let mut live: BTreeSet<String> = BTreeSet::new();
    for files in commit::committed_files(storage, run).await?.unwrap_or_default().into_values() {
        live.extend(files.into_iter().map(|f| f.path));
    }
    for r in recorded {
        let markers = run.part_commits(&r.stage, r.shard, &r.fingerprint);
        for name in storage.children(&markers).await? {
            if let Some(marker) = commit::read::<PartCommit>(storage, &format!("{markers}/{name}")).await? {
                live.extend(marker.files.into_iter().map(|f| f.path));
            }
        }
    }
    let cutoff = SystemTime::now() - grace;
    let mut out = Collected::default();
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
