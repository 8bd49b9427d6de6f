//! The commit protocol of a run directory, correct where there is no rename (object storage) and
//! used the same way on a local disk.
//!
//! - Every data file is written once, to a key no other attempt uses: its name carries the
//!   writing attempt's id (`part-000-00003.<attempt>.parquet`).
//! - A stage of one scope is committed by one create-only marker (`If-None-Match: *`) that lists
//!   its files with their sizes and row counts:
//!   `commits/<stage>/<scope>/<fingerprint>.json`, scope `run` or `shard-<i>-of-<n>`. A second
//!   attempt that finds it (a requeued Slurm task, a retried pod) takes it as done; of two
//!   attempts racing, exactly one creates it.
//! - A streaming stage also commits each part as it goes
//!   (`commits/<stage>/<scope>/<fingerprint>/part-<seq>.json`), which a resumed attempt skips.
//! - Readers (`sql`, the next stage, the trainer) read only files named by the markers of the
//!   stages the manifests record as done, never what a listing finds: files of killed or losing
//!   attempts are invisible until `lrem-pipeline gc` deletes them.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{Storage, StoreError};
use crate::{RunDir, Shard};

/// A data file a commit names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub table: String,
    /// Relative to the run's root, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub rows: u64,
}

/// The marker that commits one stage of one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub stage: String,
    pub fingerprint: String,
    /// The attempt that wrote it.
    pub attempt: String,
    pub files: Vec<FileEntry>,
    /// What the stage reported (the manifest's record: counts, seconds, usage).
    pub record: serde_json::Value,
}

/// The marker that commits one part of a streaming stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartCommit {
    pub attempt: String,
    pub files: Vec<FileEntry>,
    /// The part's funnel counts.
    pub counts: serde_json::Value,
}

/// The name of a scope in `commits/`.
pub fn scope_name(shard: Option<Shard>) -> String {
    match shard {
        None => "run".into(),
        Some(s) => format!("shard-{}-of-{}", s.index, s.count),
    }
}

impl RunDir {
    /// The marker that commits `stage` of one scope at one fingerprint.
    pub fn commit(&self, stage: &str, shard: Option<Shard>, fingerprint: &str) -> String {
        format!("commits/{stage}/{}/{fingerprint}.json", scope_name(shard))
    }

    /// The directory of the part markers of `stage` of one scope at one fingerprint.
    pub fn part_commits(&self, stage: &str, shard: Option<Shard>, fingerprint: &str) -> String {
        format!("commits/{stage}/{}/{fingerprint}", scope_name(shard))
    }
}

impl RunDir {
    /// The versions of one scope's manifest: `manifests/<scope>/<revision>.json`, each written
    /// once (create-only), the highest the current one. `manifest.json` (or the shard's) beside
    /// it is a copy of the newest, for reading by hand.
    pub fn manifest_versions(&self, shard: Option<Shard>) -> String {
        format!("manifests/{}", scope_name(shard))
    }
}

/// The name of revision `revision` of a manifest.
pub fn manifest_version_name(revision: u64) -> String {
    format!("{revision:010}.json")
}

/// The newest revision of one scope's manifest and its bytes; revision 0 is a `manifest.json`
/// without versions (written by hand, or by a version before versions). `None`: no manifest.
pub async fn read_manifest(
    storage: &Storage,
    run: &RunDir,
    shard: Option<Shard>,
) -> Result<Option<(u64, Bytes)>, StoreError> {
    let dir = run.manifest_versions(shard);
    let newest =
        storage.children(&dir).await?.iter().filter_map(|n| n.strip_suffix(".json")?.parse::<u64>().ok()).max();
    if let Some(revision) = newest {
        let path = format!("{dir}/{}", manifest_version_name(revision));
        let bytes = storage.read(&path).await?.ok_or_else(|| StoreError {
            location: storage.display(&path),
            message: "listed, then not found (deleted while read?)".into(),
        })?;
        return Ok(Some((revision, bytes)));
    }
    let copy = storage.relative(run, &run.manifest(shard));
    Ok(storage.read(&copy).await?.map(|bytes| (0, bytes)))
}

/// The part marker's name for part `seq`; the inverse is [`part_commit_seq`].
pub fn part_commit_name(seq: usize) -> String {
    format!("part-{seq:05}.json")
}

pub fn part_commit_seq(name: &str) -> Option<usize> {
    name.strip_prefix("part-")?.strip_suffix(".json")?.parse().ok()
}

/// Creates a marker: `false` when another attempt's is already there.
pub async fn create<T: Serialize>(storage: &Storage, path: &str, marker: &T) -> Result<bool, StoreError> {
    let bytes = serde_json::to_vec_pretty(marker).expect("markers serialise");
    storage.create(path, Bytes::from(bytes)).await
}

/// Reads a marker, if it is there.
pub async fn read<T: for<'de> Deserialize<'de>>(storage: &Storage, path: &str) -> Result<Option<T>, StoreError> {
    let Some(bytes) = storage.read(path).await? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError { location: storage.display(path), message: format!("not a commit marker: {e}") })
}

/// The scopes that have a manifest: the unsharded run (`None`, which may have none yet) and every
/// shard whose manifest copy lies at the run's root.
pub async fn manifest_scopes(storage: &Storage) -> Result<Vec<Option<Shard>>, StoreError> {
    let shards = storage.children("").await?.into_iter().filter_map(|n| Shard::from_manifest_name(&n));
    Ok(std::iter::once(None).chain(shards.map(Some)).collect())
}

/// A stage as a manifest of the run records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub shard: Option<Shard>,
    pub stage: String,
    pub fingerprint: String,
    pub done: bool,
}

/// The stages the manifests of the run record (the shared one and each shard's). `None` when the
/// directory has no manifest (inputs only, or files put there by hand).
pub async fn recorded_stages(storage: &Storage, run: &RunDir) -> Result<Option<Vec<Recorded>>, StoreError> {
    let mut found = None;
    for shard in manifest_scopes(storage).await? {
        let Some((revision, bytes)) = read_manifest(storage, run, shard).await? else { continue };
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| StoreError {
            location: storage.display(&run.manifest_versions(shard)),
            message: format!("revision {revision} is not a manifest: {e}"),
        })?;
        let recorded: &mut Vec<_> = found.get_or_insert_with(Vec::new);
        for (stage, record) in manifest["stages"].as_object().into_iter().flatten() {
            recorded.push(Recorded {
                shard,
                stage: stage.clone(),
                fingerprint: record["fingerprint"].as_str().unwrap_or_default().to_string(),
                done: record["state"] == "done",
            });
        }
    }
    Ok(found)
}

/// Which done records of each stage a reader takes: the unsharded one when there is one (a run
/// finished unsharded after some shards), else those of the shard count with the most shards done
/// (the larger count on a tie). Never two scopes' rows of one stage: they would repeat.
fn readable(recorded: Vec<Recorded>) -> Vec<Recorded> {
    let mut by_stage: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
    for r in recorded.into_iter().filter(|r| r.done) {
        by_stage.entry(r.stage.clone()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (_, records) in by_stage {
        if let Some(whole) = records.iter().find(|r| r.shard.is_none()) {
            out.push(whole.clone());
            continue;
        }
        let mut per_count: BTreeMap<u32, usize> = BTreeMap::new();
        for r in &records {
            *per_count.entry(r.shard.map_or(0, |s| s.count)).or_default() += 1;
        }
        let count = per_count.iter().max_by_key(|(count, done)| (**done, **count)).map(|(c, _)| *c);
        out.extend(records.into_iter().filter(|r| r.shard.map(|s| s.count) == count));
    }
    out
}

/// The files of every table the run's done stages committed, by table (one set of scopes per
/// stage, see [`readable`]). `None` when the directory has no manifest.
pub async fn committed_files(
    storage: &Storage,
    run: &RunDir,
) -> Result<Option<BTreeMap<String, Vec<FileEntry>>>, StoreError> {
    let Some(recorded) = recorded_stages(storage, run).await? else { return Ok(None) };
    let mut tables: BTreeMap<String, Vec<FileEntry>> = BTreeMap::new();
    for Recorded { shard, stage, fingerprint, .. } in readable(recorded) {
        let path = run.commit(&stage, shard, &fingerprint);
        let commit: Commit = read(storage, &path).await?.ok_or_else(|| StoreError {
            location: storage.display(&path),
            message: format!(
                "stage `{stage}` is done in the {} manifest but its commit marker is missing \
                 (a run directory from before commit markers? run the pipeline again)",
                scope_name(shard)
            ),
        })?;
        for file in commit.files {
            tables.entry(file.table.clone()).or_default().push(file);
        }
    }
    Ok(Some(tables))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_paths_name_stage_scope_and_fingerprint() {
        let run = RunDir::new("/r");
        assert_eq!(
            run.commit("keywords", Some(Shard { index: 2, count: 8 }), "ab"),
            "commits/keywords/shard-2-of-8/ab.json"
        );
        assert_eq!(run.part_commits("keywords", None, "ab"), "commits/keywords/run/ab");
        assert_eq!(part_commit_seq(&part_commit_name(12)), Some(12));
        assert_eq!(part_commit_seq("part-x.json"), None);
    }

    #[test]
    fn a_stage_is_read_from_one_set_of_scopes() {
        let r = |shard: Option<(u32, u32)>, done| Recorded {
            shard: shard.map(|(index, count)| Shard { index, count }),
            stage: "retrieval_1".into(),
            fingerprint: "f".into(),
            done,
        };
        // Shards 0-2 of 4 done, the run then finished unsharded: the unsharded rows only.
        let finished = vec![r(Some((0, 4)), true), r(Some((1, 4)), true), r(Some((2, 4)), true), r(None, true)];
        assert_eq!(readable(finished), [r(None, true)]);
        // Two counts tried: the one with more shards done.
        let mixed = vec![r(Some((0, 2)), true), r(Some((0, 4)), true), r(Some((1, 4)), true), r(Some((2, 4)), false)];
        assert_eq!(readable(mixed), [r(Some((0, 4)), true), r(Some((1, 4)), true)]);
    }

    #[tokio::test]
    async fn only_files_of_done_stages_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let storage = Storage::open(&dir.path().display().to_string()).unwrap();
        assert_eq!(committed_files(&storage, &run).await.unwrap(), None, "no manifest: not a run");
        let file = |path: &str| FileEntry { table: "triples".into(), path: path.into(), bytes: 1, rows: 1 };
        let commit = |fp: &str, path: &str| Commit {
            stage: "triples".into(),
            fingerprint: fp.into(),
            attempt: "a".into(),
            files: vec![file(path)],
            record: serde_json::json!({}),
        };
        assert!(
            create(&storage, &run.commit("triples", None, "old"), &commit("old", "tables/triples/old.parquet"))
                .await
                .unwrap()
        );
        assert!(
            create(&storage, &run.commit("triples", None, "new"), &commit("new", "tables/triples/new.parquet"))
                .await
                .unwrap()
        );
        let manifest = serde_json::json!({"stages": {"triples": {"state": "done", "fingerprint": "new"}, "gain": {"state": "running", "fingerprint": "g"}}});
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        let files = committed_files(&storage, &run).await.unwrap().unwrap();
        assert_eq!(files["triples"], [file("tables/triples/new.parquet")]);
        let shard = serde_json::json!({"stages": {"gain": {"state": "done", "fingerprint": "lost"}}});
        std::fs::write(dir.path().join("manifest.shard-0-of-2.json"), shard.to_string()).unwrap();
        let e = committed_files(&storage, &run).await.unwrap_err().to_string();
        assert!(e.contains("commits/gain/shard-0-of-2/lost.json") && e.contains("marker is missing"), "{e}");
    }
}
