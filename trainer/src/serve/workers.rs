//! The model threads. Models run on plain threads, away from the async runtime: one decoder
//! thread does continuous batching (new requests join the running batch between decode steps,
//! finished ones leave), one encoder thread micro-batches whatever embedding requests are queued.
//! Both take work from bounded queues; a full queue is the handler's 503.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::backend::Cpu;
use crate::model::LanguageModel;
use crate::model::bert::SentenceEncoder;
use crate::model::generate::{Completion, Engine, SamplingParams};

pub enum GenEvent {
    /// New text of one sample (streaming only).
    Delta {
        sample: usize,
        text: String,
    },
    Done(Completion),
    Failed(String),
}

pub struct GenJob {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub stream: bool,
    pub events: mpsc::UnboundedSender<GenEvent>,
}

struct Active {
    events: mpsc::UnboundedSender<GenEvent>,
    stream: bool,
    /// Bytes of each sample's text already sent.
    sent: Vec<usize>,
    /// Bytes held back at the end of a streamed text: a stop string may still be forming there.
    hold: usize,
}

/// Runs until every sender of `jobs` is gone.
pub fn generation_loop(lm: LanguageModel<Cpu>, mut jobs: mpsc::Receiver<GenJob>, max_batch: usize) {
    let mut engine = Engine::new(&lm.model, &lm.tokenizer);
    let mut active: HashMap<u64, Active> = HashMap::new();
    let mut next_tag = 0u64;
    loop {
        let mut admitted = Vec::new();
        let mut seats = max_batch.saturating_sub(engine.running());
        if engine.running() == 0 {
            match jobs.blocking_recv() {
                Some(job) => {
                    seats = seats.saturating_sub(job.params.n);
                    admitted.push(job);
                }
                None => return,
            }
        }
        while seats > 0 {
            match jobs.try_recv() {
                Ok(job) => {
                    seats = seats.saturating_sub(job.params.n);
                    admitted.push(job);
                }
                Err(_) => break,
            }
        }
        if !admitted.is_empty() {
            let mut prompts = Vec::with_capacity(admitted.len());
            let mut tags = Vec::with_capacity(admitted.len());
            for job in admitted {
                let tag = next_tag;
                next_tag += 1;
                let hold = job.params.stop.iter().map(String::len).max().unwrap_or(1).saturating_sub(1);
                active
                    .insert(tag, Active { events: job.events, stream: job.stream, sent: vec![0; job.params.n], hold });
                tags.push(tag);
                prompts.push((tag, job.prompt, Arc::new(job.params)));
            }
            if let Err(e) = engine.admit(prompts) {
                for tag in tags {
                    if let Some(a) = active.remove(&tag) {
                        let _ = a.events.send(GenEvent::Failed(format!("{e:#}")));
                    }
                }
            }
        }
        if engine.running() > 0
            && let Err(e) = engine.step()
        {
            // A failed step leaves the batch unusable: fail everything in it and start afresh.
            for (_, a) in active.drain() {
                let _ = a.events.send(GenEvent::Failed(format!("{e:#}")));
            }
            engine = Engine::new(&lm.model, &lm.tokenizer);
            continue;
        }
        for (tag, sample, text) in engine.partial() {
            let Some(a) = active.get_mut(&tag) else { continue };
            if !a.stream {
                continue;
            }
            let mut end = text.len().saturating_sub(a.hold);
            while end > a.sent[sample] && !text.is_char_boundary(end) {
                end -= 1;
            }
            // A trailing U+FFFD is half a character whose other bytes are in the next token.
            let ready = text[..end].trim_end_matches('\u{FFFD}').len();
            if ready > a.sent[sample] {
                let _ = a.events.send(GenEvent::Delta { sample, text: text[a.sent[sample]..ready].to_string() });
                a.sent[sample] = ready;
            }
        }
        for c in engine.take_done() {
            let Some(a) = active.get_mut(&c.tag) else { continue };
            if a.stream && c.text.len() > a.sent[c.sample] {
                let _ =
                    a.events.send(GenEvent::Delta { sample: c.sample, text: c.text[a.sent[c.sample]..].to_string() });
            }
            let _ = a.events.send(GenEvent::Done(c));
        }
        // A job leaves once the engine runs none of its samples (the handler counts the Dones).
        let live: std::collections::HashSet<u64> = engine.partial().map(|(t, _, _)| t).collect();
        active.retain(|tag, _| live.contains(tag));
    }
}

pub struct EmbedJob {
    pub ids: Vec<Vec<u32>>,
    pub reply: oneshot::Sender<Vec<Vec<f32>>>,
}

/// Runs until every sender of `jobs` is gone.
pub fn embedding_loop(encoder: SentenceEncoder<Cpu>, mut jobs: mpsc::Receiver<EmbedJob>, max_batch: usize) {
    while let Some(first) = jobs.blocking_recv() {
        let mut texts = first.ids.len();
        let mut batch = vec![first];
        while texts < max_batch {
            match jobs.try_recv() {
                Ok(job) => {
                    texts += job.ids.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = batch.iter().map(|j| j.ids.len()).collect();
        let (ids, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.ids, j.reply)).unzip();
        let mut vectors = encoder.embed_sorted(ids.into_iter().flatten().collect(), 32).into_iter();
        for (size, reply) in sizes.into_iter().zip(replies) {
            let _ = reply.send(vectors.by_ref().take(size).collect());
        }
    }
}
