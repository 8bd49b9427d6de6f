//! The committed sample world: reproducible from its seed, valid, and shaped as the issue asks
//! (sizes, hard queries, engagement consistent with the ground truth).

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use lrem_pipeline::datagen;
use lrem_pipeline::sql::Inspector;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data_samples")
}

#[test]
fn datagen_reproduces_the_committed_files_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    datagen::generate(&datagen::Args::default(), dir.path()).unwrap();
    for name in ["items.parquet", "query_log.parquet", "qrels.parquet", "needs.parquet"] {
        let fresh = std::fs::read(dir.path().join(name)).unwrap();
        let committed = std::fs::read(samples().join(name)).unwrap();
        assert!(fresh == committed, "{name} differs from data_samples/{name}: run `make datagen` and commit");
    }
}

#[test]
fn committed_inputs_validate() {
    for table in ["items", "query_log", "qrels", "needs"] {
        let spec = lrem_schemas::table(table).unwrap();
        let path = samples().join(format!("{table}.parquet"));
        lrem_schemas::validate(&path, &spec, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    }
}

async fn one_row(inspector: &Inspector, sql: &str) -> Vec<i64> {
    let out = inspector.query(sql).await.unwrap();
    let batch = &out[0][0];
    (0..batch.num_columns()).map(|c| batch.column(c).as_primitive::<Int64Type>().value(0)).collect()
}

#[tokio::test]
async fn sample_world_has_the_promised_size() {
    let inspector = Inspector::open(&samples()).await.unwrap();
    let sizes = one_row(
        &inspector,
        "select (select count(*) from items) as items, \
                (select count(distinct category_path) from items) as categories, \
                (select count(*) from query_log) as log_rows, \
                (select count(distinct lrem_normalize(query)) from query_log) as queries, \
                (select count(distinct query_id) from qrels where query_kind = 'hard' \
                   and query_id in (select lrem_query_id(query) from query_log)) as hard_in_log",
    )
    .await;
    let [items, categories, log_rows, queries, hard_in_log] = sizes[..] else { unreachable!() };
    assert!(items >= 5_000, "{items} items");
    assert!(categories >= 25, "{categories} categories");
    assert!(log_rows >= 40_000, "{log_rows} log rows");
    assert!(queries >= 1_200, "{queries} distinct queries");
    assert!(hard_in_log >= 250, "{hard_in_log} hard queries in the log");
}

#[tokio::test]
async fn engagement_follows_the_ground_truth() {
    let inspector = Inspector::open(&samples()).await.unwrap();
    let sql = std::fs::read_to_string(samples().join("../sql/inspect/engagement.sql")).unwrap();
    let out = inspector.query(&sql).await.unwrap();
    let mut ctr = std::collections::BTreeMap::new();
    for batch in &out[0] {
        let kind = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let kind = kind.as_string::<i32>();
        let grade = arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Int64).unwrap();
        let grade = grade.as_primitive::<Int64Type>();
        let rate = batch.column(3).as_primitive::<Float64Type>();
        for r in 0..batch.num_rows() {
            assert!(!rate.is_null(r));
            ctr.insert((kind.value(r).to_string(), grade.value(r)), rate.value(r));
        }
    }
    for kind in ["head", "hard"] {
        let (irrelevant, relevant) = (ctr[&(kind.to_string(), 0)], ctr[&(kind.to_string(), 3)]);
        assert!(relevant > 5.0 * irrelevant, "{kind}: CTR relevant {relevant} vs irrelevant {irrelevant}");
    }
}
