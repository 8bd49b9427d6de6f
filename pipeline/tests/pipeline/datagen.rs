//! The sample world: `world.toml`, the generator (byte-identical to `data_samples/`) and the
//! reference teacher that answers from it.

use std::path::Path;

use lrem_pipeline::datagen::teacher::{Teacher, UNKNOWN};
use lrem_pipeline::datagen::world::PATTERNS;
use lrem_pipeline::datagen::{Args, FIRST_DAY, WORLD_TOML, World, generate};

#[test]
fn committed_world_loads_and_is_large_enough() {
    let world = World::load(WORLD_TOML).unwrap();
    assert!(world.category.len() >= 25);
    let hard: usize = world.need.iter().map(|n| n.queries.len()).sum();
    assert!(hard >= 250, "{hard} hard queries");
    for p in PATTERNS {
        assert!(world.need.iter().filter(|n| n.pattern == p).count() >= 10, "{p}");
    }
}

#[test]
fn bad_reference_is_named() {
    let world = World::load(WORLD_TOML).unwrap();
    assert!(world.target("hoverboard").unwrap_err().contains("\"hoverboard\""));
    assert!(world.target("ground coffee[purple]").unwrap_err().contains("\"purple\""));
}

#[test]
fn first_day_is_2026_01_01() {
    let date = arrow::datatypes::Date32Type::to_naive_date_opt(FIRST_DAY).unwrap();
    assert_eq!(date.to_string(), "2026-01-01");
}

#[test]
fn too_few_items_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = generate(&Args { items: 10, ..Args::default() }, dir.path()).unwrap_err().to_string();
    assert!(err.contains("--items must be at least"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn default_args_regenerate_the_committed_sample_world() {
    let dir = tempfile::tempdir().unwrap();
    generate(&Args::default(), dir.path()).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data_samples");
    for file in ["items.parquet", "query_log.parquet", "qrels.parquet", "needs.parquet"] {
        let ours = std::fs::read(dir.path().join(file)).unwrap();
        assert!(ours == std::fs::read(committed.join(file)).unwrap(), "{file} differs from data_samples/");
    }
}

#[test]
fn more_queries_than_the_templates_hold_become_long_tail() {
    let dir = tempfile::tempdir().unwrap();
    let args = Args { items: 2000, queries: 20_000, log_rows: 1000, ..Args::default() };
    let summary = generate(&args, dir.path()).unwrap();
    assert_eq!(summary.head_queries + summary.hard_queries, 20_000);
}

fn teacher() -> Teacher {
    Teacher::new(&World::load(WORLD_TOML).unwrap()).unwrap()
}

#[test]
fn a_known_query_gets_its_needs_types_and_then_them_as_strict_json() {
    let t = teacher();
    let reasoning = t.answer("Which products would help with \"Something that wakes you up more than TEA\"?");
    assert_eq!(reasoning, "Shoppers with this need buy: ground coffee; espresso capsules; energy drink.");
    let keywords = t.answer(&format!("List the names of things to buy.\nText: {reasoning}"));
    let parsed: Vec<String> = serde_json::from_str(&keywords).unwrap();
    assert_eq!(parsed, ["ground coffee", "espresso capsules", "energy drink"]);
}

#[test]
fn an_attribute_restriction_reads_as_a_title_does() {
    let t = teacher();
    let world = World::load(WORLD_TOML).unwrap();
    let need = world.need.iter().find(|n| n.relevant.iter().any(|r| r.contains('['))).unwrap();
    let reasoning = t.answer(&need.queries[0]);
    assert!(!reasoning.contains('['), "{reasoning}");
}

#[test]
fn an_unknown_query_gets_the_documented_reply() {
    let t = teacher();
    assert_eq!(t.answer("Which products would help with \"ground coffee 500g\"?"), UNKNOWN);
    assert_eq!(t.answer(&format!("Text: {UNKNOWN}")), UNKNOWN);
    assert!(serde_json::from_str::<Vec<String>>(UNKNOWN).is_err());
}
