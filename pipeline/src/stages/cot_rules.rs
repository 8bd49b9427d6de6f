//! Post-processing of extracted keywords into the CoT: normalise (NFKC, case-fold, trim
//! punctuation), drop duplicates, drop keywords whose words all occur in the query, drop banned
//! terms, keep at most `max_keywords`. Each drop is counted by reason.

use std::collections::HashSet;

use lrem_schemas::normalize_query;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub duplicate: u32,
    pub in_query: u32,
    pub banned: u32,
    pub over_limit: u32,
}

impl Dropped {
    pub fn total(&self) -> u32 {
        self.duplicate + self.in_query + self.banned + self.over_limit
    }
}

/// Keywords normalised like queries, with punctuation trimmed from both ends.
pub fn normalize_keyword(keyword: &str) -> String {
    normalize_query(keyword).trim_matches(|c: char| !c.is_alphanumeric()).to_string()
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

pub fn postprocess(
    query: &str,
    keywords: &[String],
    banned: &HashSet<String>,
    max_keywords: usize,
) -> (Vec<String>, Dropped) {
    let query = normalize_query(query);
    let query_words: HashSet<&str> = words(&query).collect();
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut dropped = Dropped::default();
    for raw in keywords {
        let k = normalize_keyword(raw);
        if k.is_empty() || !seen.insert(k.clone()) {
            dropped.duplicate += 1;
        } else if words(&k).all(|w| query_words.contains(w)) {
            dropped.in_query += 1;
        } else if banned.contains(&k) {
            dropped.banned += 1;
        } else if kept.len() >= max_keywords {
            dropped.over_limit += 1;
        } else {
            kept.push(k);
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(query: &str, keywords: &[&str], banned: &[&str], max: usize) -> (Vec<String>, Dropped) {
        let kws: Vec<String> = keywords.iter().map(|s| s.to_string()).collect();
        let banned = banned.iter().map(|s| normalize_keyword(s)).collect();
        postprocess(query, &kws, &banned, max)
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
        assert_eq!(dropped, Dropped { duplicate: 1, in_query: 2, banned: 1, over_limit: 1 });
        assert_eq!(dropped.total() as usize + kept.len(), 8);
    }

    #[test]
    fn width_and_case_variants_are_duplicates() {
        let (kept, dropped) = run("gift", &["ＣＯＦＦＥＥ", "coffee"], &[], 16);
        assert_eq!(kept, ["coffee"]);
        assert_eq!(dropped.duplicate, 1);
    }

    #[test]
    fn punctuation_only_keyword_is_dropped() {
        let (kept, dropped) = run("gift", &["...", "mug"], &[], 16);
        assert_eq!(kept, ["mug"]);
        assert_eq!(dropped.duplicate, 1);
    }
}
