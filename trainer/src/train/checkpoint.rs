//! Checkpoints: the model and optimizer through Burn's recorder, the schedule and data position
//! in `state.json`, written to a temporary folder and renamed into place, so a crash mid-write
//! never leaves a half checkpoint that `--resume` would pick up.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::err;
use crate::error::{Context, Result};
use crate::model::decoder::Decoder;

/// Where training stands; with the seed, it fixes every later random choice (the batch order
/// of an epoch is a function of the seed and the epoch), so no RNG state needs saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    pub epoch: usize,
    /// Batches of `epoch` already consumed.
    pub batch_in_epoch: usize,
    pub total_steps: usize,
    pub seed: u64,
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes `checkpoints/step-NNNNNN/` and drops older checkpoints beyond `keep`.
pub fn save<B: AutodiffBackend, O: Optimizer<Decoder<B>, B>>(
    run_dir: &Path,
    model: &Decoder<B>,
    optim: &O,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    std::fs::create_dir_all(&root).with_context(|| root.display().to_string())?;
    let name = format!("step-{:06}", state.step);
    let tmp = root.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    let write = || -> Result<()> {
        std::fs::create_dir_all(&tmp)?;
        model.clone().save_file(tmp.join("model"), &recorder()).map_err(|e| err!("{e}"))?;
        recorder().record(optim.to_record(), tmp.join("optimizer")).map_err(|e| err!("{e}"))?;
        std::fs::write(tmp.join("state.json"), serde_json::to_vec_pretty(state)?)?;
        Ok(())
    };
    if let Err(e) = write() {
        // No half checkpoint stays behind (a full disk is the usual cause: each holds the
        // weights and two AdamW moments in f32).
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("{}: writing the checkpoint failed", tmp.display())));
    }
    let dest = root.join(&name);
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest).with_context(|| format!("{} → {}", tmp.display(), dest.display()))?;
    let all = list(run_dir)?;
    for old in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_dir_all(old).with_context(|| old.display().to_string())?;
    }
    Ok(dest)
}

/// Opens a run directory for a new or resumed run: creates it, refuses one that holds
/// checkpoints unless resuming, writes the resolved `config`, and returns its checkpoints.
pub fn open_run<C: Serialize>(run_dir: &Path, resume: bool, config: &C) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(run_dir).with_context(|| run_dir.display().to_string())?;
    let existing = list(run_dir)?;
    if !resume && !existing.is_empty() {
        return Err(err!(
            "{}: holds checkpoints already; pass --resume to continue, or choose a new directory",
            run_dir.display()
        ));
    }
    std::fs::write(run_dir.join("config.toml"), toml::to_string_pretty(config)?)?;
    Ok(existing)
}

/// Complete checkpoints, oldest first.
pub fn list(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let root = checkpoints_dir(run_dir);
    let mut found: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
            .filter(|p| p.join("state.json").exists())
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    Ok(found)
}

/// Loads a checkpoint into `model` and `optim` (built as for a fresh run).
pub fn load<B: AutodiffBackend, O: Optimizer<Decoder<B>, B>>(
    dir: &Path,
    model: Decoder<B>,
    optim: O,
    device: &B::Device,
) -> Result<(Decoder<B>, O, TrainState)> {
    let state: TrainState = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)
        .with_context(|| dir.join("state.json").display().to_string())?;
    let model = model.load_file(dir.join("model"), &recorder(), device).map_err(|e| err!("{}: {e}", dir.display()))?;
    let record = recorder().load(dir.join("optimizer"), device).map_err(|e| err!("{}: {e}", dir.display()))?;
    Ok((model, optim.load_record(record), state))
}
