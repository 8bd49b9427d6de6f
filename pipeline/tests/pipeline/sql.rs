//! Read-only SQL over a run directory: the table set, the `lrem_*` functions against their Rust
//! counterparts, inputs read by column name, and writes refused by name.

use std::path::Path;

use lrem_pipeline::sql::{Inspector, OutputFormat, Source, read_only_statements, render};

#[test]
fn reads_pass() {
    let ok =
        read_only_statements("select 1; with t as (select 2) select * from t; explain select 1; show tables").unwrap();
    assert_eq!(ok.len(), 4);
}

#[test]
fn writes_are_refused_by_name() {
    for (sql, named) in [
        ("copy (select 1) to '/tmp/x.parquet'", "refused COPY"),
        ("insert into items values (1)", "refused INSERT INTO"),
        ("create external table t stored as parquet location '/etc'", "refused CREATE EXTERNAL TABLE"),
        ("drop table items", "refused DROP TABLE"),
        ("set datafusion.execution.batch_size = 1", "refused SET"),
        ("create table t as select 1", "refused CREATE TABLE"),
        ("select 1; delete from items", "refused DELETE FROM"),
    ] {
        let err = read_only_statements(sql).unwrap_err().to_string();
        assert!(err.starts_with(named) && err.contains("read-only"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn empty_directory_has_every_table_with_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let inspector = Inspector::open(dir.path()).await.unwrap();
    assert!(inspector.tables.iter().all(|(_, s)| *s == Source::Empty));
    let out = inspector.query("select count(*) as n from triples_rl").await.unwrap();
    assert_eq!(render(&out[0], OutputFormat::Csv).unwrap(), "n\n0\n");
}

#[tokio::test]
async fn query_id_function_matches_rust() {
    let dir = tempfile::tempdir().unwrap();
    let inspector = Inspector::open(dir.path()).await.unwrap();
    let out =
        inspector.query("select lrem_query_id('  Green TEA ') as id, lrem_normalize('Ｔｅａ') as n").await.unwrap();
    let expected = format!("id,n\n{},tea\n", lrem_schemas::query_id("green tea"));
    assert_eq!(render(&out[0], OutputFormat::Csv).unwrap(), expected);
}

#[tokio::test]
async fn holdout_function_matches_the_trainers_split() {
    let dir = tempfile::tempdir().unwrap();
    let inspector = Inspector::open(dir.path()).await.unwrap();
    let rows = "(VALUES (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0), \
                (3, 1), (3, 2), (4, 0), (4, 1), (4, 2), (5, 0), (5, 1), (5, 2)) AS t(need_id, phrasing)";
    let sql = format!(
        "select string_agg(lrem_holdout(need_id, phrasing, 3, 9), ' ' order by need_id, phrasing) as s from {rows}"
    );
    let out = inspector.query(&sql).await.unwrap();
    let expected: Vec<&str> =
        (0..6).flat_map(|n| (0..3).map(move |p| lrem_schemas::holdout::holdout(n, p, 3, 9).as_str())).collect();
    assert_eq!(render(&out[0], OutputFormat::Csv).unwrap(), format!("s\n{}\n", expected.join(" ")));
    assert!(expected.contains(&"train") && expected.contains(&"unseen_phrasing"), "{expected:?}");
}

#[tokio::test]
async fn list_field_orders_an_aggregate_like_array_agg_order_by() {
    let dir = tempfile::tempdir().unwrap();
    let inspector = Inspector::open(dir.path()).await.unwrap();
    let rows = "(VALUES (1, 0, 30), (1, 2, 10), (2, 0, 20), (1, 2, 5)) AS t(orders, clicks, item_id)";
    let sql = format!(
        "select array_to_string(lrem_list_field(array_sort(array_agg(named_struct('orders', -orders, \
         'clicks', -clicks, 'item_id', item_id))), 'item_id'), ' ') as by_struct, \
         array_to_string(array_agg(item_id order by orders desc, clicks desc, item_id), ' ') as by_order \
         from {rows}"
    );
    let out = inspector.query(&sql).await.unwrap();
    assert_eq!(render(&out[0], OutputFormat::Csv).unwrap(), "by_struct,by_order\n20 5 10 30,20 5 10 30\n");
    let err = inspector.query("select lrem_list_field(make_array(named_struct('a', 1)), 'b')").await;
    assert!(err.unwrap_err().to_string().contains("the structs have no field `b`"));
}

#[tokio::test]
async fn inputs_are_read_by_column_name_with_optional_columns_null() {
    let dir = tempfile::tempdir().unwrap();
    // No category_path, no brand; the header's order is not the schema's.
    std::fs::write(dir.path().join("items.csv"), "price,title,item_id,colour\n4.5,Green tea,7,green\n,Mug,8,\n")
        .unwrap();
    let inspector = Inspector::open(dir.path()).await.unwrap();
    let out = inspector.query("select * from items order by item_id").await.unwrap();
    assert_eq!(
        render(&out[0], OutputFormat::Csv).unwrap(),
        "item_id,title,category_path,brand,price\n7,Green tea,,,4.5\n8,Mug,,,\n"
    );
}

#[tokio::test]
async fn missing_directory_is_named() {
    let err = Inspector::open(Path::new("/no/such/run")).await.err().unwrap().to_string();
    assert_eq!(err, "--run /no/such/run: no such directory");
}
