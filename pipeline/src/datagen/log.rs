//! The simulated search log: a keyword-style engine shows items for each query, shoppers click and
//! order what is truly relevant (with noise), day after day.
//!
//! For hard queries the engine mostly shows lexical traps (the words match, the product does not)
//! and some relevant items lower down; those are the ones that get clicked. So the engaged items of
//! a hard query are exactly what a literal retriever misses: the signal the mining stage looks for.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, RngCore};

use super::catalog::Item;
use super::queries::{Kind, Query};

/// One item the engine may show for a query.
#[derive(Debug, Clone, Copy)]
struct Slot {
    item: usize,
    grade: i32,
    /// Chance the item is on the result page of one search.
    shown: f64,
}

/// How a query behaves in the log.
#[derive(Debug, Clone)]
pub struct Traffic {
    slots: Vec<Slot>,
    /// Chance the query is searched on a given day.
    active: f64,
    /// Mean searches on an active day.
    searches: f64,
}

/// Click and order probabilities by relevance grade (0 = irrelevant): noisy but consistent.
fn click_p(grade: i32) -> f64 {
    [0.012, 0.07, 0.14, 0.24][grade.clamp(0, 3) as usize]
}
fn order_p(grade: i32) -> f64 {
    [0.02, 0.08, 0.15, 0.25][grade.clamp(0, 3) as usize]
}

pub fn traffic(queries: &[Query], items: &[Item], by_type: &[Vec<usize>], rng: &mut impl RngCore) -> Vec<Traffic> {
    // Popularity ranks are a random permutation so head and hard queries interleave.
    let mut ranks: Vec<usize> = (0..queries.len()).collect();
    ranks.shuffle(rng);
    queries
        .iter()
        .zip(ranks)
        .map(|(q, rank)| {
            let mut slots = Vec::new();
            let push = |list: &[usize], grade: i32, shown: f64, slots: &mut Vec<Slot>| {
                slots.extend(list.iter().map(|&item| Slot { item, grade, shown }));
            };
            let grade_of =
                |wanted: i32| q.qrels.iter().filter(move |(_, g)| *g == wanted).map(|(i, _)| *i).collect::<Vec<_>>();
            let (mut exact, mut partial) = (grade_of(3), grade_of(1));
            exact.shuffle(rng);
            partial.shuffle(rng);
            match q.kind {
                Kind::Head => {
                    push(&exact[..exact.len().min(12)], 3, 0.7, &mut slots);
                    push(&partial[..partial.len().min(4)], 1, 0.4, &mut slots);
                }
                Kind::Hard => {
                    push(&q.traps, 0, 0.8, &mut slots);
                    push(&exact[..exact.len().min(6)], 3, 0.45, &mut slots);
                    push(&partial[..partial.len().min(2)], 1, 0.35, &mut slots);
                }
            }
            // Unrelated items the engine shows now and then.
            let any_type = rng.random_range(0..by_type.len());
            let noise: Vec<usize> = by_type[any_type].choose_multiple(rng, 2).copied().collect();
            push(&noise, 0, 0.15, &mut slots);
            // One slot per item: an item shown both as relevant and as noise keeps its first role.
            let mut seen = std::collections::HashSet::new();
            slots.retain(|s| s.item < items.len() && seen.insert(s.item));
            let (active, searches) = match q.kind {
                Kind::Head => (rng.random_range(0.55..1.0), 1.0 + 40.0 / ((rank + 1) as f64).powf(0.5)),
                Kind::Hard => (rng.random_range(0.5..0.95), rng.random_range(2.0..6.0)),
            };
            Traffic { slots, active, searches }
        })
        .collect()
}

/// One row of the log before it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub query: usize,
    /// How the shopper typed it that day (case and spacing vary; normalisation undoes it).
    pub typed: String,
    pub item: usize,
    pub day: i32,
    pub impressions: i64,
    pub clicks: i64,
    pub orders: i64,
}

/// Simulates one day of one query; rows for items shown at least once.
pub fn day_rows(query: usize, text: &str, traffic: &Traffic, day: i32, rng: &mut impl RngCore) -> Vec<LogRow> {
    if !rng.random_bool(traffic.active) {
        return Vec::new();
    }
    let searches = ((traffic.searches * rng.random_range(0.5..1.5)).round() as i64).max(1);
    let typed = typed_form(text, rng);
    let mut rows = Vec::new();
    for slot in &traffic.slots {
        let (mut impressions, mut clicks, mut orders) = (0, 0, 0);
        for _ in 0..searches {
            if rng.random_bool(slot.shown) {
                impressions += 1;
                if rng.random_bool(click_p(slot.grade)) {
                    clicks += 1;
                    if rng.random_bool(order_p(slot.grade)) {
                        orders += 1;
                    }
                }
            }
        }
        if impressions > 0 {
            rows.push(LogRow { query, typed: typed.clone(), item: slot.item, day, impressions, clicks, orders });
        }
    }
    rows
}

/// Shoppers do not type queries the same way twice.
fn typed_form(text: &str, rng: &mut impl RngCore) -> String {
    match rng.random_range(0..20) {
        0 => text.to_uppercase(),
        1 => text.split(' ').map(capitalise).collect::<Vec<_>>().join(" "),
        2 => format!(" {}  ", text.replace(' ', "  ")),
        _ => text.to_string(),
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
