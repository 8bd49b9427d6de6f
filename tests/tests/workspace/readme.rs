//! docs/tables.md documents every table exactly as the schemas crate defines it.

#[test]
fn readme_table_docs_match_the_schemas() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/tables.md")).unwrap();
    let (start, end) = ("<!-- tables:begin -->\n", "<!-- tables:end -->");
    let from = readme.find(start).expect("docs/tables.md has a tables:begin marker") + start.len();
    let to = readme.find(end).expect("docs/tables.md has a tables:end marker");
    let expected = lrem_schemas::tables::tables_markdown();
    if readme[from..to] != expected {
        let path = std::env::temp_dir().join("lrem-tables.md");
        std::fs::write(&path, &expected).unwrap();
        panic!("docs/tables.md is stale; the current text is in {}", path.display());
    }
}
