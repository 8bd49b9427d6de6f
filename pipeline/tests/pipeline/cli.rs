//! The command line as a person uses it: exit codes, messages, and nothing written on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pipeline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrem-pipeline")).args(args).current_dir(repo()).output().unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn sql_counts_the_sample_query_log() {
    let o = pipeline(&["sql", "--run", "data_samples", "-e", "select count(*) as n from query_log", "--format", "csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "n\n60000\n");
}

#[test]
fn funnel_file_answers_over_the_inputs() {
    let o = pipeline(&["sql", "--run", "data_samples", "--file", "sql/inspect/funnel.sql", "--format", "csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("stage,rows,failed\nquery_log,60000,0\nitems,6000,0\nqueries,0,0\n"), "{out}");
    assert!(out.ends_with("triples_rl,0,0\n"), "{out}");
}

#[test]
fn every_inspection_file_runs_on_the_inputs() {
    for entry in std::fs::read_dir(repo().join("sql/inspect")).unwrap() {
        let path = entry.unwrap().path();
        let o = pipeline(&["sql", "--run", "data_samples", "--file", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
    }
}

#[test]
fn write_statement_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("stolen.parquet");
    let sql = format!("copy (select * from items) to '{}'", target.display());
    let o = pipeline(&["sql", "--run", "data_samples", "-e", &sql]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("error: refused COPY: `lrem-pipeline sql` is read-only"), "{}", stderr(&o));
    assert!(!target.exists());
}

#[test]
fn sql_statements_from_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"))
        .args(["sql", "--run", "data_samples"])
        .current_dir(repo())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"select count(*) as n\n from items;\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    assert!(stdout(&o).contains("| 6000 |"), "{}", stdout(&o));
}

#[test]
fn validate_reports_a_bad_csv_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("items.csv"), "item_id,title,category_path\n1,a,b\n1,a,b\n").unwrap();
    std::fs::write(
        dir.path().join("query_log.csv"),
        "query,item_id,day,impressions,clicks,orders\n,1,2026-01-01,1,0,0\n",
    )
    .unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let o = pipeline(&["validate", "--run", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("items.csv: column \"item_id\", row 2: duplicate key item_id = 1"), "{err}");
    assert!(err.contains("query_log.csv: column \"query\", row 1: null or empty value"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), before.len(), "validate writes nothing");
}

#[test]
fn validate_the_committed_sample_world() {
    let o = pipeline(&["validate", "--run", "data_samples"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("data_samples/query_log.parquet: 60000 rows, valid `query_log`"), "{}", stdout(&o));
}

#[test]
fn datagen_at_a_custom_scale() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = pipeline(&["datagen", "--out", out, "--items", "2000", "--queries", "600", "--log-rows", "5000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("2000 items in "), "{}", stdout(&o));
    let o = pipeline(&["sql", "--run", out, "-e", "select count(*) as n from query_log", "--format", "csv"]);
    assert_eq!(stdout(&o), "n\n5000\n");
}

#[test]
fn datagen_refuses_an_impossible_size_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("world");
    let o = pipeline(&["datagen", "--out", out.to_str().unwrap(), "--items", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--items must be at least"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn a_batch_system_shard_that_cannot_be_right_stops_the_run_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_lrem-pipeline"))
        .args(["run", "--config", "data_samples/pipeline.toml", "--run-dir", run_dir.to_str().unwrap(), "--quiet"])
        .env("SLURM_ARRAY_TASK_ID", "4")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("SLURM_ARRAY_TASK_ID: shard 4 of 4 is out of range"), "{}", stderr(&o));
    assert!(!run_dir.exists());
}
