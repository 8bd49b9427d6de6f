//! Reading a keyword list out of a model's reply.
//!
//! Strict first (the reply is a JSON array of strings, or an object with a `keywords` array),
//! then tolerant: code fences and chatter around the first JSON array, then a plain numbered or
//! bulleted list. A reply none of these read is `None`: the caller retries with a repair prompt
//! and then records a failure. An empty list is never a result, and neither is a list of
//! punctuation (`["+++++"]`, which even a constrained decoder can emit): items without a letter
//! or digit are not keywords.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    Json,
    Tolerant,
}

impl ParseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ParseMode::Json => "json",
            ParseMode::Tolerant => "tolerant",
        }
    }
}

pub fn parse_keywords(reply: &str) -> Option<(Vec<String>, ParseMode)> {
    if let Some(list) = serde_json::from_str::<Value>(reply.trim()).ok().and_then(|v| strings(&v)) {
        return Some((list, ParseMode::Json));
    }
    if let Some(list) = embedded_array(reply) {
        return Some((list, ParseMode::Tolerant));
    }
    plain_list(reply).map(|l| (l, ParseMode::Tolerant))
}

/// A non-empty list of strings with a letter or digit, from an array or `{"keywords": [...]}`.
fn strings(value: &Value) -> Option<Vec<String>> {
    let array = match value {
        Value::Array(a) => a,
        Value::Object(o) => o.get("keywords")?.as_array()?,
        _ => return None,
    };
    let list: Vec<String> = array
        .iter()
        .map(|v| v.as_str().map(|s| s.trim().to_string()))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect();
    (!list.is_empty()).then_some(list)
}

/// The first `[...]` (or `{...}`) in the text that parses as a keyword list.
fn embedded_array(reply: &str) -> Option<Vec<String>> {
    for (open, close) in [('[', ']'), ('{', '}')] {
        let mut from = 0;
        while let Some(start) = reply[from..].find(open).map(|i| from + i) {
            if let Some(end) = reply.rfind(close).filter(|&e| e > start)
                && let Some(list) = serde_json::from_str::<Value>(&reply[start..=end]).ok().and_then(|v| strings(&v))
            {
                return Some(list);
            }
            from = start + 1;
        }
    }
    None
}

/// "1. coffee\n2. energy drink" or "- coffee\n- energy drink": at least two items.
fn plain_list(reply: &str) -> Option<Vec<String>> {
    let items: Vec<String> = reply
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            let rest = line.strip_prefix(['-', '*', '•']).or_else(|| {
                line.split_once(['.', ')'])
                    .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty())
                    .map(|(_, r)| r)
            })?;
            let item = rest.trim().trim_matches(['"', '\'', ',']).trim();
            (item.chars().any(char::is_alphanumeric) && item.split_whitespace().count() <= 6).then(|| item.to_string())
        })
        .collect();
    (items.len() >= 2).then_some(items)
}
