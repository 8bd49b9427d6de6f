use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use super::*;
use crate::table;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn problems(path: &Path, table_name: &str) -> Vec<Problem> {
    match validate(path, &table(table_name).unwrap(), &ValidateOptions::default()) {
        Err(Error::Invalid(report)) => report.problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

/// The single problem of `path`, as the user reads it.
fn only_problem(path: &Path, table_name: &str) -> String {
    let found = problems(path, table_name);
    assert_eq!(found.len(), 1, "{found:#?}");
    found[0].to_string()
}

const ITEMS_HEADER: &str = "item_id,title,category_path,brand,price\n";

#[test]
fn clean_csv_counts_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "items.csv",
        format!("{ITEMS_HEADER}1,Green tea 500g,Grocery > Tea,Leaf Co,4.5\n2,Mug,Home > Kitchen,,\n").as_bytes(),
    );
    assert_eq!(validate(&p, &table("items").unwrap(), &ValidateOptions::default()).unwrap(), 2);
}

#[test]
fn missing_file_names_table_and_path() {
    let err = validate(Path::new("/nonexistent/items.parquet"), &table("items").unwrap(), &ValidateOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(err, "the `items` input /nonexistent/items.parquet does not exist");
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", b"");
    assert_eq!(only_problem(&p, "items"), format!("{}: the file is empty (0 bytes)", p.display()));
}

#[test]
fn header_only_has_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", ITEMS_HEADER.as_bytes());
    assert!(only_problem(&p, "items").contains("no data rows"));
}

#[test]
fn wrong_type_in_csv_names_column_row_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", format!("{ITEMS_HEADER}1,a,b,c,1\nx7,a,b,c,1\nx8,a,b,c,1\n").as_bytes());
    assert_eq!(
        only_problem(&p, "items"),
        format!(
            "{}: column \"item_id\", row 2: line 3: value \"x7\" is not a valid int64 (2 rows in all)",
            p.display()
        )
    );
}

#[test]
fn missing_column_lists_what_was_found() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", b"item_id,name,category_path\n1,a,b\n");
    assert_eq!(
        only_problem(&p, "items"),
        format!("{}: column \"title\": missing from the header (found: item_id, name, category_path)", p.display())
    );
}

#[test]
fn null_query_in_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"query":"tea","item_id":1,"day":"2026-01-01","impressions":3,"clicks":1,"orders":0}"#;
    let null = r#"{"query":null,"item_id":2,"day":"2026-01-01","impressions":3,"clicks":1,"orders":0}"#;
    let p = write(dir.path(), "log.jsonl", format!("{ok}\n{null}\n").as_bytes());
    assert_eq!(
        only_problem(&p, "query_log"),
        format!("{}: column \"query\", row 2: null or empty value in a column that must always have one", p.display())
    );
}

#[test]
fn non_utf8_text_in_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = format!("{ITEMS_HEADER}1,ok,b,c,1\n2,caf").into_bytes();
    bytes.extend_from_slice(&[0xe9, b',', b'b', b',', b'c', b',', b'1', b'\n']);
    let p = write(dir.path(), "items.csv", &bytes);
    assert_eq!(
        only_problem(&p, "items"),
        format!("{}: column \"title\", row 2: line 3: bytes that are not UTF-8 at byte 3 of the value", p.display())
    );
}

#[test]
fn one_megabyte_query_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "a".repeat(1 << 20);
    let p = write(
        dir.path(),
        "log.csv",
        format!("query,item_id,day,impressions,clicks,orders\n{huge},1,2026-01-01,1,0,0\n").as_bytes(),
    );
    let msg = only_problem(&p, "query_log");
    assert!(msg.contains("column \"query\", row 1: value is 1048576 bytes long, the limit is 4096 bytes"), "{msg}");
    assert!(msg.len() < 300, "the message must not echo the whole value: {} bytes", msg.len());
}

#[test]
fn duplicate_item_ids_point_at_the_first_occurrence() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", format!("{ITEMS_HEADER}1,a,b,c,1\n2,a,b,c,1\n1,a,b,c,1\n").as_bytes());
    assert_eq!(
        only_problem(&p, "items"),
        format!(
            "{}: column \"item_id\", row 3: duplicate key item_id = 1, first seen at row 1; keys must be unique",
            p.display()
        )
    );
}

#[test]
fn ragged_csv_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", format!("{ITEMS_HEADER}1,a,b,c,1\n2,a,b\n").as_bytes());
    assert_eq!(only_problem(&p, "items"), format!("{}, row 2: line 3 has 3 fields but the header has 5", p.display()));
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let p =
        write(dir.path(), "items.csv", format!("{ITEMS_HEADER}1,,b,c,1\nzz,a,b,c,1\n1,a,b,c,1\n3,a,b\n").as_bytes());
    let kinds: Vec<_> = problems(&p, "items").iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::Null, ProblemKind::WrongType, ProblemKind::Duplicate, ProblemKind::RaggedRow]);
}

fn write_parquet(path: &Path, batch: RecordBatch) {
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_with_wrong_column_type() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("items.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("category_path", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a1"])),
            Arc::new(StringArray::from(vec!["t"])),
            Arc::new(StringArray::from(vec!["c"])),
        ],
    )
    .unwrap();
    write_parquet(&p, batch);
    assert_eq!(
        only_problem(&p, "items"),
        format!("{}: column \"item_id\": has type string, expected int64", p.display())
    );
}

#[test]
fn parquet_duplicates_across_parts_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("category_path", DataType::Utf8, false),
    ]));
    for (name, ids) in [("part-0.parquet", vec![1, 2]), ("part-1.parquet", vec![3, 2])] {
        let n = ids.len();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(vec!["t"; n])),
                Arc::new(StringArray::from(vec!["c"; n])),
            ],
        )
        .unwrap();
        write_parquet(&dir.path().join(name), batch);
    }
    let msg = only_problem(dir.path(), "items");
    assert!(
        msg.contains("part-1.parquet: column \"item_id\", row 2: duplicate key item_id = 2, first seen at row 2 of"),
        "{msg}"
    );
}

#[test]
fn unknown_extension() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.xlsx", b"x");
    assert!(
        validate(&p, &table("items").unwrap(), &ValidateOptions::default())
            .unwrap_err()
            .to_string()
            .contains("unsupported file type")
    );
}

#[test]
fn impossible_counts_are_reported_with_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let header = "query,item_id,day,impressions,clicks,orders\n";
    let rows = "tea,1,2026-01-01,10,2,1\n\
                tea,2,2026-01-01,-3,0,0\n\
                tea,3,2026-01-01,5,6,0\n\
                tea,4,2026-01-01,5,1,9\n\
                tea,5,2026-01-01,5,7,0\n\
                tea,6,2026-01-01,5,0,-1\n";
    let p = write(dir.path(), "query_log.csv", format!("{header}{rows}").as_bytes());
    let found: Vec<String> = problems(&p, "query_log").iter().map(ToString::to_string).collect();
    let at = p.display();
    assert_eq!(
        found,
        [
            format!("{at}: column \"impressions\", row 2: value -3 is negative; a count cannot be"),
            format!(
                "{at}: column \"clicks\", row 3: clicks 6 > impressions 5: a row cannot have more clicks than \
                 impressions (2 rows in all)"
            ),
            format!(
                "{at}: column \"orders\", row 4: orders 9 > impressions 5: a row cannot have more orders than impressions"
            ),
            format!("{at}: column \"orders\", row 6: value -1 is negative; a count cannot be"),
        ]
    );
}

#[test]
fn a_catalogue_without_categories_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "items.csv", b"item_id,title\n1,Green tea 500g\n2,Mug\n");
    assert_eq!(validate(&p, &table("items").unwrap(), &ValidateOptions::default()).unwrap(), 2);
    let p = write(dir.path(), "items.jsonl", b"{\"item_id\": 1, \"title\": \"Mug\", \"category_path\": null}\n");
    assert_eq!(validate(&p, &table("items").unwrap(), &ValidateOptions::default()).unwrap(), 1);
}
