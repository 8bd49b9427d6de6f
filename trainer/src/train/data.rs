//! From triples to token sequences and batches.
//!
//! Query side: the chat template with the query as the user turn, then the assistant turn
//! `<think>cot</think><emb>`. Item side: user turn `Item: title`, assistant turn `<emb>`. The
//! `<emb>` token is always last, so with left padding its hidden state is the last column.

use std::collections::HashSet;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::bail;
use crate::error::Result;
use crate::format::{Prompting, QuerySequence};
use crate::triples::Triple;

/// One training pair, tokenised.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub query_id: u64,
    pub item_id: i64,
    pub query: QuerySequence,
    pub item: Vec<u32>,
}

/// Examples and the triples left out, with why.
pub struct Prepared {
    pub examples: Vec<Example>,
    pub skipped: Vec<(u64, i64, String)>,
}

pub fn prepare(
    triples: &[Triple],
    prompting: &Prompting,
    max_query_tokens: usize,
    max_item_tokens: usize,
) -> Result<Prepared> {
    prepare_as(triples, prompting, max_query_tokens, max_item_tokens, true)
}

/// [`prepare`], with the query side `prompt<think>cot</think><emb>` (`with_cot`) or the direct
/// embedder's `prompt<emb>`.
pub fn prepare_as(
    triples: &[Triple],
    prompting: &Prompting,
    max_query_tokens: usize,
    max_item_tokens: usize,
    with_cot: bool,
) -> Result<Prepared> {
    let mut examples = Vec::with_capacity(triples.len());
    let mut skipped = Vec::new();
    for t in triples {
        let query =
            if with_cot { prompting.query_sequence(&t.query, &t.cot)? } else { prompting.direct_sequence(&t.query)? };
        let item = prompting.item_sequence(&t.title)?;
        if query.ids.len() > max_query_tokens {
            skipped.push((
                t.query_id,
                t.item_id,
                format!("query sequence of {} tokens > max_query_tokens", query.ids.len()),
            ));
        } else if item.len() > max_item_tokens {
            skipped.push((t.query_id, t.item_id, format!("item sequence of {} tokens > max_item_tokens", item.len())));
        } else {
            examples.push(Example { query_id: t.query_id, item_id: t.item_id, query, item });
        }
    }
    if examples.is_empty() {
        bail!("no training example left out of {} triples ({} skipped)", triples.len(), skipped.len());
    }
    Ok(Prepared { examples, skipped })
}

/// The batches of one epoch, as indices into `examples`: a seeded shuffle, then windows of
/// `bucket` batches sorted by item length and cut into batches in which no item appears twice (a
/// repeated positive would be its own false negative); batch order is shuffled again.
pub fn epoch_batches(
    examples: &[Example],
    batch_size: usize,
    bucket: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut rng);
    let window = batch_size * bucket.max(1);
    let mut batches = Vec::new();
    let mut deferred: Vec<usize> = Vec::new();
    for chunk in order.chunks(window) {
        let mut sorted = chunk.to_vec();
        // By item length: every pair of one query has the same query length, so sorting by it
        // would fill batches with one query, whose other pairs InfoNCE masks (no negatives left).
        sorted.sort_by_key(|&i| examples[i].item.len());
        // Examples that clashed with a full batch's items go first into the next one.
        let mut queue: Vec<usize> = deferred.drain(..).chain(sorted).collect();
        while !queue.is_empty() {
            let mut batch = Vec::with_capacity(batch_size);
            let mut items = HashSet::new();
            let mut rest = Vec::new();
            for i in queue {
                if batch.len() < batch_size && items.insert(examples[i].item_id) {
                    batch.push(i);
                } else {
                    rest.push(i);
                }
            }
            queue = rest;
            if batch.len() == batch_size {
                batches.push(batch);
            } else {
                // A short batch waits for the next window to fill it.
                deferred.extend(batch);
                deferred.extend(queue.drain(..));
                break;
            }
        }
    }
    // What is left after the last window: the final, short batches.
    while !deferred.is_empty() {
        let mut batch = Vec::new();
        let mut items = HashSet::new();
        let mut rest = Vec::new();
        for i in deferred.drain(..) {
            if batch.len() < batch_size && items.insert(examples[i].item_id) {
                batch.push(i);
            } else {
                rest.push(i);
            }
        }
        batches.push(batch);
        deferred = rest;
    }
    batches.shuffle(&mut rng);
    batches
}
