//! Repetition controls applied to a row's logits before sampling: OpenAI's presence and
//! frequency penalties, CTRL's repetition penalty (as Hugging Face and vLLM apply it), and a
//! ban on repeated n-grams. A small model's greedy text falls into loops ("sleep mask, sleep
//! mask, …"); these are the standard ways out, and the same ones a server's clients send.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Every control off by default; each one on its own is a no-op at its neutral value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Penalties {
    /// OpenAI's `presence_penalty`: subtracted once from the logit of every token the completion
    /// already holds. 0 is off.
    pub presence: f32,
    /// OpenAI's `frequency_penalty`: subtracted once per earlier occurrence in the completion.
    /// 0 is off.
    pub frequency: f32,
    /// CTRL's penalty over the prompt and the completion (Hugging Face's and vLLM's
    /// `repetition_penalty`): a seen token's logit is divided by it when positive and multiplied
    /// when negative. 1 is off.
    pub repetition: f32,
    /// No n-gram of this many tokens twice in the completion (Hugging Face's
    /// `no_repeat_ngram_size`, which also counts the prompt's; here the prompt is a chat
    /// template and a query the completion may quote). 0 is off.
    pub no_repeat_ngram: usize,
}

impl Default for Penalties {
    fn default() -> Self {
        Self { presence: 0.0, frequency: 0.0, repetition: 1.0, no_repeat_ngram: 0 }
    }
}

impl Penalties {
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// Changes `logits` for the next token after `completion`; `prompt` counts only for the
    /// repetition penalty.
    pub fn apply(&self, logits: &mut [f32], prompt: &[u32], completion: &[u32]) {
        if self.presence != 0.0 || self.frequency != 0.0 {
            let mut counts: HashMap<u32, u32> = HashMap::new();
            for &t in completion {
                *counts.entry(t).or_default() += 1;
            }
            for (t, n) in counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= self.presence + self.frequency * n as f32;
                }
            }
        }
        if self.repetition != 1.0 {
            let mut seen: Vec<u32> = prompt.iter().chain(completion).copied().collect();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / self.repetition } else { *l * self.repetition };
                }
            }
        }
        let n = self.no_repeat_ngram;
        if n > 0 && completion.len() + 1 >= n {
            // The last n-1 tokens are a prefix; every token that followed it before is banned.
            let prefix = &completion[completion.len() + 1 - n..];
            for window in completion.windows(n) {
                if window[..n - 1] == *prefix
                    && let Some(l) = logits.get_mut(window[n - 1] as usize)
                {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// The ranges OpenAI and vLLM accept: the offending field's API name and what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (name, v) in [("presence_penalty", self.presence), ("frequency_penalty", self.frequency)] {
            if !(-2.0..=2.0).contains(&v) {
                return Err((name, format!("{name} must be in [-2, 2], got {v}")));
            }
        }
        if !(self.repetition > 0.0 && self.repetition.is_finite()) {
            let name = "repetition_penalty";
            return Err((name, format!("{name} must be greater than 0, got {}", self.repetition)));
        }
        Ok(())
    }
}

/// `off`, or `+`-joined `presence=P`, `frequency=F`, `repetition=R`, `no-repeat-ngram=N`: how a
/// command line names a setting, and how a report row shows it.
impl FromStr for Penalties {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = Self::default();
        if s == "off" {
            return Ok(p);
        }
        for part in s.split('+') {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected KEY=VALUE"))?;
            let number = || value.parse::<f32>().map_err(|e| format!("`{part}`: {e}"));
            match key {
                "presence" => p.presence = number()?,
                "frequency" => p.frequency = number()?,
                "repetition" => p.repetition = number()?,
                "no-repeat-ngram" => p.no_repeat_ngram = value.parse().map_err(|e| format!("`{part}`: {e}"))?,
                _ => return Err(format!("`{key}`: not one of presence, frequency, repetition, no-repeat-ngram")),
            }
        }
        p.check().map_err(|(_, message)| message)?;
        Ok(p)
    }
}

impl fmt::Display for Penalties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Self::default();
        let mut parts = Vec::new();
        if self.presence != d.presence {
            parts.push(format!("presence={}", self.presence));
        }
        if self.frequency != d.frequency {
            parts.push(format!("frequency={}", self.frequency));
        }
        if self.repetition != d.repetition {
            parts.push(format!("repetition={}", self.repetition));
        }
        if self.no_repeat_ngram != d.no_repeat_ngram {
            parts.push(format!("no-repeat-ngram={}", self.no_repeat_ngram));
        }
        if parts.is_empty() { f.write_str("off") } else { f.write_str(&parts.join("+")) }
    }
}
