//! Queries of the sample world and their ground truth.
//!
//! Head queries name the product ("ground coffee", "casa oro ground coffee 500g"): a literal
//! retriever serves them. Hard queries come from the world's needs ("something that wakes you up
//! more than tea"): their relevant items share no words with them, while lexical traps do.

use std::collections::{BTreeMap, HashSet};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

use super::catalog::Item;
use super::world::{Target, TypeRef, World};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Head,
    Hard,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Head => "head",
            Kind::Hard => "hard",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub kind: Kind,
    pub pattern: Option<String>,
    /// Relevant items (indices into the item list) with their grade, ascending by index.
    pub qrels: Vec<(usize, i32)>,
    /// Irrelevant items a literal engine shows for this query (shares words, wrong product).
    pub traps: Vec<usize>,
    /// For a hard query: its need (position in world.toml) and which of its phrasings it is.
    pub need: Option<(usize, usize)>,
}

/// Words too common to make two texts similar.
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "the",
    "for",
    "with",
    "without",
    "of",
    "to",
    "in",
    "on",
    "my",
    "me",
    "i",
    "that",
    "than",
    "more",
    "less",
    "is",
    "it",
    "at",
    "by",
    "from",
    "who",
    "can",
    "be",
    "or",
    "not",
    "no",
    "don't",
    "doesn't",
    "your",
    "you",
    "something",
    "what",
    "need",
    "like",
    "all",
    "one",
    "some",
    "too",
    "so",
    "up",
    "out",
    "when",
    "after",
    "before",
];

pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
}

fn items_of(target: Target, by_type: &[Vec<usize>], items: &[Item]) -> impl Iterator<Item = usize> {
    by_type[target.type_index]
        .iter()
        .copied()
        .filter(move |&i| target.attribute.is_none_or(|a| items[i].has_attribute(a)))
        .collect::<Vec<_>>()
        .into_iter()
}

/// All hard queries (every phrasing of every need), in file order.
pub fn hard(
    world: &World,
    items: &[Item],
    by_type: &[Vec<usize>],
    titles: &[String],
    rng: &mut impl RngCore,
) -> Vec<Query> {
    let similar = LexicalIndex::new(world, titles);
    let mut out = Vec::new();
    for (need_id, need) in world.need.iter().enumerate() {
        let mut grades: BTreeMap<usize, i32> = BTreeMap::new();
        for (refs, grade) in [(&need.partial, 1), (&need.relevant, 3)] {
            for r in refs {
                let target = world.target(r).expect("world checked at load");
                for i in items_of(target, by_type, items) {
                    grades.insert(i, grade);
                }
            }
        }
        let mut trap_items: Vec<usize> = Vec::new();
        for r in &need.lexical_trap {
            let target = world.target(r).expect("world checked at load");
            trap_items.extend(items_of(target, by_type, items).filter(|i| !grades.contains_key(i)));
        }
        for (phrasing, text) in need.queries.iter().enumerate() {
            let mut traps = trap_items.clone();
            traps.shuffle(rng);
            traps.truncate(8);
            for i in similar.top(text, 6, rng) {
                if !grades.contains_key(&i) && !traps.contains(&i) {
                    traps.push(i);
                }
            }
            out.push(Query {
                text: text.clone(),
                kind: Kind::Hard,
                pattern: Some(need.pattern.clone()),
                qrels: grades.iter().map(|(&i, &g)| (i, g)).collect(),
                traps,
                need: Some((need_id, phrasing)),
            });
        }
    }
    out
}

/// Items sharing the most words with a query: what a keyword engine would show.
struct LexicalIndex {
    postings: BTreeMap<String, Vec<usize>>,
}

impl LexicalIndex {
    fn new(world: &World, titles: &[String]) -> Self {
        let vocabulary: HashSet<String> =
            world.need.iter().flat_map(|n| n.queries.iter()).flat_map(|q| words(q)).collect();
        let mut postings: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, title) in titles.iter().enumerate() {
            for w in words(title).filter(|w| vocabulary.contains(w)) {
                let list = postings.entry(w).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Self { postings }
    }

    fn top(&self, query: &str, n: usize, rng: &mut impl RngCore) -> Vec<usize> {
        let mut overlap: BTreeMap<usize, usize> = BTreeMap::new();
        for w in words(query) {
            for &i in self.postings.get(&w).into_iter().flatten() {
                *overlap.entry(i).or_default() += 1;
            }
        }
        let mut ranked: Vec<(usize, usize)> = overlap.into_iter().collect();
        ranked.shuffle(rng);
        ranked.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
        ranked.into_iter().take(n).map(|(i, _)| i).collect()
    }
}

/// Consecutive draws of taken texts after which head queries get model codes.
const LONG_TAIL_AFTER_MISSES: usize = 10_000;

/// Head queries until `n` in all, skipping any text already taken (normalised).
pub fn head(
    types: &[TypeRef<'_>],
    items: &[Item],
    by_type: &[Vec<usize>],
    n: usize,
    taken: &mut HashSet<String>,
    rng: &mut impl RngCore,
) -> Vec<Query> {
    let mut out = Vec::new();
    let (mut attempts, mut misses, mut long_tail) = (0, 0, false);
    while out.len() < n && attempts < n * 50 + 1000 {
        attempts += 1;
        // The templates hold about ten thousand texts. Once draws keep landing on taken ones, the
        // rest are long-tail queries: a refined query plus a model code, as large logs are full of
        // (the sample world never gets here, so its bytes do not change).
        long_tail |= misses >= LONG_TAIL_AFTER_MISSES;
        // The bare product type first, for every type, then random refinements.
        let (type_index, template) = if attempts <= types.len() {
            (attempts - 1, 0)
        } else {
            (rng.random_range(0..types.len()), rng.random_range(1..5))
        };
        let p = types[type_index].product;
        let brand = matches!(template, 1 | 4).then(|| rng.random_range(0..p.brands.len()));
        let attribute = matches!(template, 2 | 4).then(|| rng.random_range(0..p.attributes.len()));
        let size = (template == 3).then(|| rng.random_range(0..p.sizes.len()));
        let mut parts = Vec::new();
        parts.extend(brand.map(|b| p.brands[b].to_lowercase()));
        parts.extend(attribute.map(|a| p.attributes[a].clone()));
        parts.push(p.name.clone());
        parts.extend(size.map(|s| p.sizes[s].to_lowercase()));
        if long_tail {
            let letter = char::from(b'a' + rng.random_range(0..26u8));
            parts.push(format!("{letter}{}", rng.random_range(100..100_000)));
        }
        let text = parts.join(" ");
        if !taken.insert(lrem_schemas::normalize_query(&text)) {
            misses += 1;
            continue;
        }
        misses = 0;
        let mut qrels = Vec::new();
        let mut partial = 0;
        for &i in &by_type[type_index] {
            let item = &items[i];
            let exact = brand.is_none_or(|b| item.brand as usize == b)
                && attribute.is_none_or(|a| item.has_attribute(a))
                && size.is_none_or(|s| item.size as usize == s);
            if exact {
                qrels.push((i, 3));
            } else if partial < 50 {
                // Same product, other brand/attribute/size: a partial answer (capped at scale).
                partial += 1;
                qrels.push((i, 1));
            }
        }
        out.push(Query { text, kind: Kind::Head, pattern: None, qrels, traps: Vec::new(), need: None });
    }
    out
}
