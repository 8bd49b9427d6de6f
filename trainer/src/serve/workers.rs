//! The model threads. Models run on plain threads, away from the async runtime: one decoder
//! thread does continuous batching (new requests join the running batch between decode steps,
//! finished ones leave), one encoder thread micro-batches whatever embedding requests are queued.
//! Both take work from bounded queues; a full queue is the handler's 503.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::backend::Inference;
use crate::format::pool_last;
use crate::lrem::LremModel;
use crate::model::LanguageModel;
use crate::model::bert::SentenceEncoder;
use crate::model::decoder::Decoder;
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

/// Runs until every sender of `jobs` is gone. Idle, it waits on this plain thread; busy, it runs
/// on one of rayon's workers, where each product's fan-out wakes one thread fewer and this thread
/// works instead of waiting. Not while idle: a worker parked here would be lost to the encoder's
/// products (`make triples` embeds its items meanwhile).
pub fn generation_loop(lm: LanguageModel<Inference>, mut jobs: mpsc::Receiver<GenJob>, max_batch: usize) {
    let mut state = Batch { engine: Engine::new(&lm.model, &lm.tokenizer), active: HashMap::new(), next_tag: 0 };
    while let Some(job) = jobs.blocking_recv() {
        rayon::scope(|_| state.run_until_idle(&lm, &mut jobs, job, max_batch));
    }
}

struct Batch<'m> {
    engine: Engine<'m, Inference>,
    active: HashMap<u64, Active>,
    next_tag: u64,
}

impl<'m> Batch<'m> {
    /// Admits `first` and whatever else is queued, and decodes until no sequence is left.
    fn run_until_idle(
        &mut self,
        lm: &'m LanguageModel<Inference>,
        jobs: &mut mpsc::Receiver<GenJob>,
        first: GenJob,
        max_batch: usize,
    ) {
        let mut first = Some(first);
        while first.is_some() || self.engine.running() > 0 {
            let mut admitted = Vec::new();
            let mut seats = max_batch.saturating_sub(self.engine.running());
            if let Some(job) = first.take() {
                seats = seats.saturating_sub(job.params.n);
                admitted.push(job);
            }
            self.step(lm, jobs, admitted, seats);
        }
    }

    /// Admits the queued jobs that fit, then decodes one token of every running sequence; a
    /// failure drops the batch (`fail_all`).
    fn step(
        &mut self,
        lm: &'m LanguageModel<Inference>,
        jobs: &mut mpsc::Receiver<GenJob>,
        mut admitted: Vec<GenJob>,
        mut seats: usize,
    ) {
        let Batch { engine, active, next_tag } = self;
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
            for job in admitted {
                let tag = *next_tag;
                *next_tag += 1;
                let hold = job.params.stop.iter().map(String::len).max().unwrap_or(1).saturating_sub(1);
                active
                    .insert(tag, Active { events: job.events, stream: job.stream, sent: vec![0; job.params.n], hold });
                prompts.push((tag, job.prompt, Arc::new(job.params)));
            }
            if let Err(e) = guarded(|| engine.admit(prompts)) {
                *engine = fail_all(active, e, lm);
                return;
            }
        }
        if engine.running() > 0
            && let Err(e) = guarded(|| engine.step())
        {
            *engine = fail_all(active, e, lm);
            return;
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

/// A failed model call leaves the batch unusable: every request in it fails, and a fresh engine
/// takes the next ones.
fn fail_all<'m>(
    active: &mut HashMap<u64, Active>,
    e: crate::Error,
    lm: &'m LanguageModel<Inference>,
) -> Engine<'m, Inference> {
    for (_, a) in active.drain() {
        let _ = a.events.send(GenEvent::Failed(format!("{e:#}")));
    }
    Engine::new(&lm.model, &lm.tokenizer)
}

/// Runs a model call, turning a panic inside the backend into an error so that the thread (and
/// the server) lives on; the caller drops the batch it was working on.
fn guarded<T>(f: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(crate::err!("the model failed: {what}"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Query,
    Item,
}

pub struct EmbedJob {
    /// The texts tokenised by the handler (BERT embeds these ids).
    pub ids: Vec<Vec<u32>>,
    /// The raw texts (an LREM model renders them in its template).
    pub texts: Vec<String>,
    pub kind: InputKind,
    /// One vector per text, with the CoT an LREM query was embedded from.
    pub reply: oneshot::Sender<Vec<(Vec<f32>, Option<String>)>>,
}

pub enum Embedder {
    Bert(SentenceEncoder<Inference>),
    /// A decoder's last hidden state at the last token, L2-normalised (vLLM's `LAST` pooling).
    Decoder(Box<Decoder<Inference>>),
    Lrem(Box<LremModel<Inference>>),
}

/// The paper's CoT budget: at most 16 keyword tokens.
const COT_MAX_TOKENS: usize = 16;

impl Embedder {
    fn embed(&self, jobs: &[EmbedJob]) -> crate::Result<Vec<(Vec<f32>, Option<String>)>> {
        match self {
            Embedder::Bert(encoder) => {
                let all: Vec<Vec<u32>> = jobs.iter().flat_map(|j| j.ids.iter().cloned()).collect();
                Ok(encoder.embed_sorted(all, 32).into_iter().map(|v| (v, None)).collect())
            }
            Embedder::Decoder(model) => {
                let all: Vec<Vec<u32>> = jobs.iter().flat_map(|j| j.ids.iter().cloned()).collect();
                Ok(pool_last(model, &all, 16).into_iter().map(|v| (v, None)).collect())
            }
            Embedder::Lrem(model) => {
                // Queries (generation first) and items go through separately, then back in order.
                let mut out = vec![(Vec::new(), None); jobs.iter().map(|j| j.texts.len()).sum()];
                for kind in [InputKind::Query, InputKind::Item] {
                    let mut slots = Vec::new();
                    let mut texts = Vec::new();
                    let mut at = 0;
                    for j in jobs {
                        if j.kind == kind {
                            slots.extend(at..at + j.texts.len());
                            texts.extend(j.texts.iter().map(String::as_str));
                        }
                        at += j.texts.len();
                    }
                    if texts.is_empty() {
                        continue;
                    }
                    let vectors: Vec<(Vec<f32>, Option<String>)> = match kind {
                        InputKind::Query => model
                            .embed_queries(&texts, COT_MAX_TOKENS, 16)?
                            .into_iter()
                            .map(|e| (e.vector, Some(e.cot)))
                            .collect(),
                        InputKind::Item => model.embed_items(&texts, 16)?.into_iter().map(|v| (v, None)).collect(),
                    };
                    for (slot, v) in slots.into_iter().zip(vectors) {
                        out[slot] = v;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Runs until every sender of `jobs` is gone: takes whatever is queued (up to `max_batch`
/// texts) as one batch.
pub fn embedding_loop(embedder: Embedder, mut jobs: mpsc::Receiver<EmbedJob>, max_batch: usize) {
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
        let Ok(vectors) = guarded(|| embedder.embed(&batch)) else {
            continue; // the replies drop, and each handler answers 500
        };
        let mut vectors = vectors.into_iter();
        for job in batch {
            let _ = job.reply.send(vectors.by_ref().take(job.texts.len()).collect());
        }
    }
}
