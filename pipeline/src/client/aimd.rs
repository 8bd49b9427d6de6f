//! Adaptive concurrency: additive increase, multiplicative decrease (AIMD), as TCP does.
//!
//! Every endpoint starts at its configured `max_concurrency`. A 429 halves the limit (at most once
//! per cool-down, so one burst of 429s from requests already in flight counts once); each window
//! of `limit` successes raises it by one, back up to the maximum. Peers retry 429s at a fixed
//! concurrency and keep hammering an overloaded endpoint; this backs off and recovers by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    successes: usize,
    last_decrease: Option<Instant>,
}

#[derive(Debug)]
pub struct Aimd {
    max: usize,
    cool_down: Duration,
    state: Mutex<State>,
    freed: Notify,
}

/// A slot; dropping it frees the slot.
pub struct Permit {
    owner: Arc<Aimd>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.owner.state.lock().expect("aimd lock").in_flight -= 1;
        self.owner.freed.notify_waiters();
    }
}

impl Aimd {
    pub fn new(max: usize, cool_down: Duration) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            max,
            cool_down,
            state: Mutex::new(State { limit: max, in_flight: 0, successes: 0, last_decrease: None }),
            freed: Notify::new(),
        })
    }

    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            {
                let mut s = self.state.lock().expect("aimd lock");
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Permit { owner: self.clone() };
                }
            }
            freed.await;
        }
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock().expect("aimd lock");
        s.successes += 1;
        if s.successes >= s.limit && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            drop(s);
            self.freed.notify_waiters();
        }
    }

    pub fn on_overload(&self) {
        let mut s = self.state.lock().expect("aimd lock");
        let now = Instant::now();
        if s.last_decrease.is_some_and(|t| now.duration_since(t) < self.cool_down) {
            return;
        }
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
        s.last_decrease = Some(now);
    }

    pub fn limit(&self) -> usize {
        self.state.lock().expect("aimd lock").limit
    }

    pub fn in_flight(&self) -> usize {
        self.state.lock().expect("aimd lock").in_flight
    }
}
