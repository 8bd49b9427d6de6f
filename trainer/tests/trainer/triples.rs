//! Reading the pipeline's triples: sharded parts as one table, a missing split named.

use lrem_schemas::RunDir;
use lrem_trainer::triples::*;

#[test]
fn reads_sharded_parts_as_one_table() {
    let dir = tempfile::tempdir().unwrap();
    for shard in 0..2u64 {
        let triple = Triple {
            query_id: shard,
            query: "energizing drink".into(),
            cot: "coffee, caffeine".into(),
            item_id: 10 + shard as i64,
            title: "Casa Oro dark roast ground coffee 500g".into(),
            relevance: 0.9,
        };
        let alone = dir.path().join(format!("alone-{shard}"));
        let written = write(&alone, Split::Rl, &[triple]).unwrap();
        let shard = Some(lrem_schemas::Shard { index: shard as u32, count: 2 });
        let part = RunDir::new(dir.path()).table_of("triples_rl", shard);
        std::fs::create_dir_all(&part).unwrap();
        std::fs::rename(&written, part.join(written.file_name().unwrap())).unwrap();
    }
    let triples = read(dir.path(), Split::Rl).unwrap();
    assert_eq!(triples.iter().map(|t| t.item_id).collect::<Vec<_>>(), [10, 11]);
    assert_eq!(triples[0].cot, "coffee, caffeine");
}

#[test]
fn missing_split_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = read(dir.path(), Split::ColdStart).unwrap_err().to_string();
    assert!(err.contains("`triples_cold_start` input") && err.contains("does not exist"), "{err}");
}
