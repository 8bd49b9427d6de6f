//! The built-in prompts name no product type of the sample world. A small model copies a
//! prompt's example into its answers: v1 of the keyword prompt had "espresso" and "energy drink",
//! the answer to one of the world's own hard needs, which leaked into unrelated queries' CoTs
//! and into the triples that the evaluation then scores.

use std::path::Path;

fn product_types(world: &toml::Value) -> Vec<String> {
    let mut types = Vec::new();
    for category in world["category"].as_array().expect("[[category]]") {
        for product in category.get("product").and_then(|p| p.as_array()).into_iter().flatten() {
            types.push(product["type"].as_str().expect("product.type").to_lowercase());
        }
    }
    types
}

/// `needle` in `text` with no letter or digit on either side.
fn contains_phrase(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[test]
fn prompts_name_no_product_type_of_the_sample_world() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let world: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("../data_samples/world.toml")).unwrap()).unwrap();
    let types = product_types(&world);
    assert!(types.len() > 100, "{} product types read", types.len());
    let mut leaks = Vec::new();
    for entry in std::fs::read_dir(root.join("prompts")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().to_lowercase();
        for t in types.iter().filter(|t| contains_phrase(&text, t)) {
            leaks.push(format!("{}: {t}", path.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(leaks.is_empty(), "prompts naming sample-world product types: {leaks:?}");
}

#[test]
fn the_check_finds_a_leak() {
    assert!(contains_phrase("for example: [\"espresso\", \"energy drink\"]", "energy drink"));
    assert!(!contains_phrase("teapot", "tea"));
}
