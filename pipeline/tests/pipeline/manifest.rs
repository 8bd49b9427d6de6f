//! The manifest under concurrent writers (the shards of one run).

use lrem_pipeline::manifest::{Manifest, StageRecord, StageState};
use lrem_schemas::Shard;
use lrem_schemas::store::Storage;

fn record(fingerprint: &str, state: StageState) -> StageRecord {
    StageRecord { fingerprint: fingerprint.into(), state, ..Default::default() }
}

#[tokio::test]
async fn two_writers_of_one_manifest_lose_neither_ones_progress() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().display().to_string()).unwrap();
    let run = storage.run_dir();
    let shard = Some(Shard { index: 1, count: 4 });
    let mut a = Manifest::default();
    a.save(&storage, &run, shard).await.unwrap();
    // B starts from revision 1, as A goes on to finish `reasoning`.
    let mut b = Manifest::load(&storage, &run, shard).await.unwrap().unwrap();
    a.stages.insert("reasoning".into(), record("f", StageState::Done));
    a.save(&storage, &run, shard).await.unwrap();
    b.stages.insert("reasoning".into(), record("f", StageState::Running));
    b.stages.insert("keywords".into(), record("k", StageState::Running));
    b.save(&storage, &run, shard).await.unwrap();
    let now = Manifest::load(&storage, &run, shard).await.unwrap().unwrap();
    assert_eq!((now.revision, b.revision), (3, 3));
    assert_eq!(now.stages["reasoning"].state, StageState::Done, "A's progress survived B's stale write");
    assert_eq!(now.stages["keywords"].state, StageState::Running);
    let copy = std::fs::read(dir.path().join("manifest.shard-1-of-4.json")).unwrap();
    assert_eq!(serde_json::from_slice::<Manifest>(&copy).unwrap().stages, now.stages);
    assert!(dir.path().join("manifests/shard-1-of-4/0000000003.json").exists());
}
