//! Progress bars per stage (indicatif): rows done, rows/s, ETA, and the endpoint's live state
//! (requests in flight, concurrency limit after AIMD, cache hits, tokens). `--quiet` hides them.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::ModelClient;

#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        let multi = (!quiet).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)));
        Self { multi }
    }

    pub fn stage(&self, name: &str, total: u64) -> StageBar {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            let style =
                ProgressStyle::with_template("{prefix:>18} [{bar:30}] {pos}/{len} rows {per_sec} eta {eta} {wide_msg}")
                    .expect("valid template")
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        StageBar { bar }
    }
}

pub struct StageBar {
    bar: Option<ProgressBar>,
}

impl StageBar {
    pub fn update(&self, done: u64, client: Option<&ModelClient>) {
        let Some(bar) = &self.bar else { return };
        bar.set_position(done);
        if let Some(c) = client {
            use std::sync::atomic::Ordering::Relaxed;
            let s = &c.stats;
            let requests = s.requests.load(Relaxed);
            let hits = s.cache_hits.load(Relaxed);
            let hit_rate = if requests + hits > 0 { 100.0 * hits as f64 / (requests + hits) as f64 } else { 0.0 };
            bar.set_message(format!(
                "in flight {}/{} | cache {hit_rate:.0}% | tokens {}+{} | 429s {} | retries {}",
                c.concurrency().in_flight(),
                c.concurrency().limit(),
                s.prompt_tokens.load(Relaxed),
                s.completion_tokens.load(Relaxed),
                s.throttled.load(Relaxed),
                s.retries.load(Relaxed),
            ));
        }
    }

    pub fn finish(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(message);
        }
    }
}
