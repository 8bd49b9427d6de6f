//! Reading a keyword list out of a model's reply: strict JSON first, then the shapes small models
//! write instead.

use lrem_pipeline::stages::keyword_parse::{ParseMode, parse_keywords};

fn words(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn strict_json() {
    assert_eq!(
        parse_keywords(r#"["coffee", " energy drink "]"#),
        Some((words(&["coffee", "energy drink"]), ParseMode::Json))
    );
    assert_eq!(parse_keywords(r#"{"keywords": ["coffee"]}"#), Some((words(&["coffee"]), ParseMode::Json)));
}

#[test]
fn fenced_or_chatty_json() {
    let reply = "Sure! Here are the keywords:\n```json\n[\"coffee\", \"espresso\"]\n```\nHope this helps.";
    assert_eq!(parse_keywords(reply), Some((words(&["coffee", "espresso"]), ParseMode::Tolerant)));
}

#[test]
fn numbered_and_bulleted_lists() {
    assert_eq!(
        parse_keywords("1. coffee\n2) energy drink\n"),
        Some((words(&["coffee", "energy drink"]), ParseMode::Tolerant))
    );
    assert_eq!(
        parse_keywords("- coffee\n- \"cold brew\",\n"),
        Some((words(&["coffee", "cold brew"]), ParseMode::Tolerant))
    );
}

#[test]
fn unreadable_or_empty_is_none_never_an_empty_list() {
    let punctuation = "[\"++++++++\", \"...\", \" - \"]";
    for reply in
        ["", "[]", "[\"\"]", "I cannot help with that.", "[1, 2]", "{\"keywords\": []}", "[\"coffee\"", punctuation]
    {
        assert_eq!(parse_keywords(reply), None, "{reply:?}");
    }
}
