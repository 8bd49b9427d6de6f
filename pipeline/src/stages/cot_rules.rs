//! Post-processing of extracted keywords into the CoT: normalise (NFKC, case-fold, trim
//! punctuation and a list's numbering), drop degenerate ones (no letter or digit, a run of words
//! repeated, longer than a keyword), duplicates, keywords whose words all occur in the query,
//! keywords whose words all come from the prompt templates themselves (a small model lists the
//! prompt's own words: "materials, features, ingredients"), banned terms, and keep at most
//! `max_keywords`. Each drop is counted by reason.

use std::collections::HashSet;

use lrem_schemas::normalize_query;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub degenerate: u32,
    pub duplicate: u32,
    pub in_query: u32,
    pub prompt_echo: u32,
    pub banned: u32,
    pub over_limit: u32,
}

impl Dropped {
    pub fn total(&self) -> u32 {
        self.degenerate + self.duplicate + self.in_query + self.prompt_echo + self.banned + self.over_limit
    }

    pub fn add(&mut self, other: &Dropped) {
        self.degenerate += other.degenerate;
        self.duplicate += other.duplicate;
        self.in_query += other.in_query;
        self.prompt_echo += other.prompt_echo;
        self.banned += other.banned;
        self.over_limit += other.over_limit;
    }
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} degenerate, {} duplicate, {} query words, {} prompt echoes, {} banned, {} over the limit",
            self.degenerate, self.duplicate, self.in_query, self.prompt_echo, self.banned, self.over_limit
        )
    }
}

/// Words a keyword may have at most: longer is a sentence, not a keyword.
const MAX_KEYWORD_WORDS: usize = 6;

/// The words of prompt templates, their `{{ … }}` variables left out: what a keyword made only
/// of them was copied from.
pub fn template_words<'a>(templates: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    let mut out = HashSet::new();
    for template in templates {
        let mut rest = template;
        while !rest.is_empty() {
            let (text, after) = match rest.find("{{") {
                Some(at) => (&rest[..at], rest[at..].find("}}").map_or("", |end| &rest[at + end + 2..])),
                None => (rest, ""),
            };
            out.extend(words(&normalize_query(text)).map(str::to_string));
            rest = after;
        }
    }
    out
}

/// No letter or digit, too many words for a keyword, or words that repeat a shorter run of them
/// ("mug mug mug", "wool shirt: wool shirt"), as a looping decoder writes.
fn degenerate(keyword: &str) -> bool {
    let ws: Vec<&str> = words(keyword).collect();
    let n = ws.len();
    let repeats = |p: usize| n % p == 0 && ws.chunks(p).all(|c| c == &ws[..p]);
    n == 0 || n > MAX_KEYWORD_WORDS || (1..n).any(repeats)
}

/// Keywords normalised like queries, with punctuation trimmed from both ends and a list's
/// numbering ("2. ", "3) ") from the start.
pub fn normalize_keyword(keyword: &str) -> String {
    let k = normalize_query(keyword);
    let numbered = k
        .split_once(['.', ')'])
        .filter(|(n, rest)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && rest.starts_with(' '));
    let k = numbered.map_or(k.as_str(), |(_, rest)| rest);
    k.trim_matches(|c: char| !c.is_alphanumeric()).to_string()
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

/// What the rules hold besides the query: banned terms, the prompt templates' words, the limit.
pub struct Rules {
    pub banned: HashSet<String>,
    pub template_words: HashSet<String>,
    pub max_keywords: usize,
}

pub fn postprocess(query: &str, keywords: &[String], rules: &Rules) -> (Vec<String>, Dropped) {
    let query = normalize_query(query);
    let query_words: HashSet<&str> = words(&query).collect();
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut dropped = Dropped::default();
    for raw in keywords {
        let k = normalize_keyword(raw);
        if degenerate(&k) {
            dropped.degenerate += 1;
        } else if !seen.insert(k.clone()) {
            dropped.duplicate += 1;
        } else if words(&k).all(|w| query_words.contains(w)) {
            dropped.in_query += 1;
        } else if words(&k).all(|w| rules.template_words.contains(w)) {
            dropped.prompt_echo += 1;
        } else if rules.banned.contains(&k) {
            dropped.banned += 1;
        } else if kept.len() >= rules.max_keywords {
            dropped.over_limit += 1;
        } else {
            kept.push(k);
        }
    }
    (kept, dropped)
}
