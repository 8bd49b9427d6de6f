//! Per-step metrics: a JSON line each in `metrics.jsonl`, and `curves.svg` drawn from them.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use crate::plot::{Panel, line_panels};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub step: usize,
    pub epoch: usize,
    pub lr: f64,
    pub loss: f64,
    pub infonce: f64,
    pub ntp: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub examples_per_s: f64,
    pub elapsed_s: f64,
}

/// One JSON line per step; cold start and RL write their own record types.
pub fn append<R: Serialize>(path: &Path, record: &R) -> Result<()> {
    append_all(path, std::slice::from_ref(record))
}

/// A JSON line per record, the file opened once.
pub fn append_all<R: Serialize>(path: &Path, records: &[R]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut lines = String::new();
    for r in records {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| path.display().to_string())?;
    file.write_all(lines.as_bytes())?;
    Ok(())
}

pub fn read(path: &Path) -> Result<Vec<StepRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}: line {}", path.display(), i + 1)))
        .collect()
}

/// Keeps the lines up to `step` (a resumed run rewrites what came after its checkpoint); any
/// record type with a `step` field.
pub fn truncate(path: &Path, step: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    };
    let mut kept = String::new();
    for (i, line) in text.lines().enumerate() {
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        if value["step"].as_u64().is_some_and(|s| s as usize <= step) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(path, kept).with_context(|| path.display().to_string())
}

pub fn plot(records: &[StepRecord], path: &Path) -> Result<()> {
    let series = |f: fn(&StepRecord) -> f64| records.iter().map(|r| (r.step as f64, f(r))).collect::<Vec<_>>();
    let panels = [
        Panel { title: "loss = λ1·NTP + λ2·InfoNCE", series: vec![("loss", series(|r| r.loss))] },
        Panel { title: "loss parts", series: vec![("InfoNCE", series(|r| r.infonce)), ("NTP", series(|r| r.ntp))] },
        Panel { title: "learning rate", series: vec![("lr", series(|r| r.lr))] },
        Panel { title: "gradient norm (before clipping)", series: vec![("grad norm", series(|r| r.grad_norm))] },
    ];
    line_panels(path, &panels, 2)
}
