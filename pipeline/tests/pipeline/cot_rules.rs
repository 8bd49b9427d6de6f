//! The CoT post-processing rules, each dropping and counting what it drops.

use lrem_pipeline::stages::cot_rules::{Dropped, Rules, normalize_keyword, postprocess, template_words};

fn run(query: &str, keywords: &[&str], banned: &[&str], max: usize) -> (Vec<String>, Dropped) {
    let kws: Vec<String> = keywords.iter().map(|s| s.to_string()).collect();
    let banned = banned.iter().map(|s| normalize_keyword(s)).collect();
    let template_words = template_words(["List the {{ query }} features and materials, {{x}} as JSON."]);
    postprocess(query, &kws, &Rules { banned, template_words, max_keywords: max })
}

#[test]
fn each_rule_drops_and_counts() {
    let (kept, dropped) = run(
        "Drink that wakes you up more than tea",
        &["Coffee.", "coffee", "  ESPRESSO!", "tea", "wakes up", "product", "energy drink", "guarana"],
        &["Product"],
        3,
    );
    // "energy drink" stays: one of its words is new. "guarana" is over the limit of 3.
    assert_eq!(kept, ["coffee", "espresso", "energy drink"]);
    assert_eq!(dropped, Dropped { duplicate: 1, in_query: 2, banned: 1, over_limit: 1, ..Dropped::default() });
    assert_eq!(dropped.total() as usize + kept.len(), 8);
}

#[test]
fn list_numbering_is_not_part_of_a_keyword() {
    let (kept, _) = run("gift", &["1. Travel mug:", "2) tea towel", "3.5 inch screen", "10. 3-pack"], &[], 16);
    assert_eq!(kept, ["travel mug", "tea towel", "3.5 inch screen", "3-pack"]);
}

#[test]
fn width_and_case_variants_are_duplicates() {
    let (kept, dropped) = run("gift", &["ＣＯＦＦＥＥ", "coffee"], &[], 16);
    assert_eq!(kept, ["coffee"]);
    assert_eq!(dropped.duplicate, 1);
}

#[test]
fn degenerate_keywords_are_dropped() {
    let long = "one two three four five six seven";
    let (kept, dropped) =
        run("gift", &["...", "++++++++", "mug mug mug", long, "wool shirt: wool shirt", "mug", "tea towel"], &[], 16);
    assert_eq!(kept, ["mug", "tea towel"]);
    assert_eq!(dropped.degenerate, 5);
}

#[test]
fn keywords_made_of_the_prompt_s_own_words_are_echoes() {
    // "materials" and "features, materials" come from the template; "query" is a variable
    // name, not template text; "steel materials" has a word of its own.
    let (kept, dropped) = run("gift", &["Materials", "features, materials", "query", "steel materials"], &[], 16);
    assert_eq!(kept, ["query", "steel materials"]);
    assert_eq!(dropped.prompt_echo, 2);
    let words = template_words(["a {{ b }} c {{ d"]);
    assert_eq!(words, ["a", "c"].into_iter().map(String::from).collect());
}
