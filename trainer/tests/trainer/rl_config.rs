//! The RL config file: the sample parses, an unknown key is named.

use std::path::Path;

use lrem_trainer::rl::config::*;

/// The error and every cause under it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out = format!("{out}: {c}");
        cause = c.source();
    }
    out
}

#[test]
fn the_sample_config_parses_and_an_unknown_key_is_named() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = RlConfig::from_file(&root.join("data_samples/rl.toml")).unwrap();
    assert_eq!((config.rollout.group, config.optim.lr, config.data.split.as_str()), (8, 1e-6, "rl"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rl.toml");
    std::fs::write(&path, "[rollout]\ngroups = 8\n").unwrap();
    let err = chain(&RlConfig::from_file(&path).unwrap_err());
    assert!(err.contains("rl.toml") && err.contains("groups"), "{err}");
    std::fs::write(&path, "[data]\nsplit = \"test\"\n").unwrap();
    let err = chain(&RlConfig::from_file(&path).unwrap_err());
    assert!(err.contains("rl.toml") && err.contains("data.split"), "{err}");
}
