//! GRPO on a tiny random decoder with SmolLM2's real tokenizer: the log-probabilities stored
//! while sampling are those a fresh forward pass gives the same tokens, and rollouts, rewards,
//! advantages, the clipped objective (with γ2·InfoNCE) and AdamW together raise a reward.

use std::collections::HashMap;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use lrem_trainer::backend::{Cpu, CpuAutodiff};
use lrem_trainer::format::{EMB, END_THINK, Prompting, TOKENS};
use lrem_trainer::model::decoder::{Decoder, DecoderConfig};
use lrem_trainer::model::gguf::GgufFile;
use lrem_trainer::model::layers::host;
use lrem_trainer::model::tokenizer::TextTokenizer;
use lrem_trainer::model::weights::RandomWeights;
use lrem_trainer::rl::rewards::{Reward, Rewards, Sample};
use lrem_trainer::rl::rollout::{Rollout, RolloutParams, sample, sampled_logprobs};
use lrem_trainer::rl::step::{
    RankedItems, RlQuery, Share, UpdateSettings, advantages_over_step, grpo_gradients, score_rollouts,
    score_rollouts_among, update_gradients,
};
use lrem_trainer::train::config::OptimConfig;
use lrem_trainer::train::optim::adamw;

use crate::ddp::{Values, relative_gap};
use crate::smollm2;

#[test]
fn sampled_logprobs_equal_a_fresh_forward_pass_and_samples_end_as_parsed() {
    let mut tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&smollm2()).unwrap()).unwrap();
    tokenizer.add_special_tokens(&TOKENS);
    let model: Decoder<Cpu> =
        Decoder::load(&DecoderConfig::tiny(tokenizer.vocab_size()), &mut RandomWeights::new(5), &Default::default())
            .unwrap();
    let (end_think, emb) = (tokenizer.token_id(END_THINK).unwrap(), tokenizer.token_id(EMB).unwrap());
    let p = Prompting { tokenizer: &tokenizer, system_prompt: Some(String::new()) };
    let prompts: Vec<Vec<u32>> =
        ["a drink more energizing than tea", "mug"].iter().map(|q| p.query_prompt(q).unwrap()).collect();
    let params = RolloutParams { group: 4, temperature: 0.8, top_k: 0, top_p: 0.95, budget: 6, seed: 11 };
    let rollouts = sample(&model, &tokenizer, &prompts, &params, end_think, emb).unwrap();
    let order: Vec<(usize, usize)> = rollouts.iter().map(|r| (r.query, r.sample)).collect();
    assert_eq!(order, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]);
    // Seeded samples of one prompt differ.
    assert!(rollouts[..4].iter().any(|r| r.ids != rollouts[0].ids), "{rollouts:?}");
    for r in &rollouts {
        assert_eq!(r.ids.len(), r.logprobs.len());
        assert!(r.ids.len() <= params.budget + 2);
        let seq = r.embedding_sequence(&prompts[r.query], end_think, emb, &tokenizer.stop_ids());
        assert!(seq.ends_with(&[end_think, emb]) && seq.starts_with(&prompts[r.query]));
    }
    let pairs: Vec<(&[u32], &[u32])> =
        rollouts.iter().map(|r| (prompts[r.query].as_slice(), r.ids.as_slice())).collect();
    // Stored at temperature 1, whatever the sampling temperature.
    let fresh = host(sampled_logprobs(&model, &pairs, 1.0));
    let width = rollouts.iter().map(|r| r.ids.len()).max().unwrap();
    for (i, r) in rollouts.iter().enumerate() {
        for (j, stored) in r.logprobs.iter().enumerate() {
            let again = fresh[i * width + j];
            assert!((stored - again).abs() < 1e-4, "sample {i} token {j}: stored {stored}, fresh {again}");
        }
    }
}

/// SmolLM2's tokenizer with the LREM tokens, and a tiny random decoder over it.
fn tiny_policy(seed: u64) -> (TextTokenizer, Decoder<CpuAutodiff>) {
    let mut tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&smollm2()).unwrap()).unwrap();
    tokenizer.add_special_tokens(&TOKENS);
    let model =
        Decoder::load(&DecoderConfig::tiny(tokenizer.vocab_size()), &mut RandomWeights::new(seed), &Default::default())
            .unwrap();
    (tokenizer, model)
}

/// One RL query per (query, item title), ids in order.
fn toy_queries(tokenizer: &TextTokenizer, pairs: &[(&str, &str)]) -> Vec<RlQuery> {
    let p = Prompting { tokenizer, system_prompt: Some(String::new()) };
    pairs
        .iter()
        .enumerate()
        .map(|(i, (q, item))| RlQuery {
            query: q.to_string(),
            prompt: p.query_prompt(q).unwrap(),
            item: p.item_sequence(item).unwrap(),
            item_id: i as i64,
            positives: vec![i as i64],
            query_id: i as u64,
        })
        .collect()
}

/// 1 when the sample's first token is its query's keyword: a user-defined reward, as a
/// `Reward` implementation.
struct Keyword(HashMap<String, u32>);

impl Reward for Keyword {
    fn name(&self) -> &str {
        "keyword"
    }
    fn score(&self, s: &Sample<'_>) -> f64 {
        if s.ids.first() == Some(&self.0[s.query]) { 1.0 } else { 0.0 }
    }
}

/// The keyword task: two queries, each rewarded when its sample's first token is its keyword,
/// the untrained policy's fourth likeliest first token.
struct KeywordTask {
    tokenizer: TextTokenizer,
    model: Decoder<CpuAutodiff>,
    queries: Vec<RlQuery>,
    prompts: Vec<Vec<u32>>,
    rewards: Rewards,
    settings: UpdateSettings,
}

fn keyword_task() -> KeywordTask {
    let (tokenizer, model) = tiny_policy(9);
    let (end_think, emb) = (tokenizer.token_id(END_THINK).unwrap(), tokenizer.token_id(EMB).unwrap());
    let queries =
        toy_queries(&tokenizer, &[("something stronger than tea", "Ground coffee"), ("a mug", "Stoneware mug")]);
    // The keyword: the untrained model's fourth most likely first token, so that sampling from
    // its top 8 finds it now and then, and only learning makes it the usual first token.
    let frozen = model.valid();
    let mut keywords = HashMap::new();
    for q in &queries {
        let hidden = frozen.forward(&[q.prompt.clone()], &[vec![true; q.prompt.len()]], None);
        let t = hidden.dims()[1];
        let logits = host(frozen.logits(hidden.narrow(1, t - 1, 1)));
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        keywords.insert(q.query.clone(), order[3] as u32);
    }
    let rewards = Rewards { funcs: vec![(Box::new(Keyword(keywords)), 1.0)] };
    let settings = UpdateSettings::new(8, end_think, emb, tokenizer.stop_ids());
    let prompts: Vec<Vec<u32>> = queries.iter().map(|q| q.prompt.clone()).collect();
    KeywordTask { tokenizer, model, queries, prompts, rewards, settings }
}

#[test]
fn grpo_raises_the_mean_reward_of_a_toy_task() {
    let KeywordTask { tokenizer, mut model, queries, prompts, rewards, settings } = keyword_task();
    let (end_think, emb) = (settings.end_think, settings.emb);
    let optim_config = OptimConfig { weight_decay: 0.0, ..Default::default() };
    let mut optim = adamw(&optim_config).init::<CpuAutodiff, Decoder<CpuAutodiff>>();
    let mut means = Vec::new();
    for step in 0..40 {
        let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 3, seed: step };
        let rollouts = sample(&model.valid(), &tokenizer, &prompts, &params, end_think, emb).unwrap();
        let (grads, stats) = grpo_gradients(&model, &rewards, &queries, &rollouts, &settings, Share::WHOLE);
        assert!(stats.entropy.is_finite() && stats.infonce.is_finite(), "{stats:?}");
        means.push(stats.reward_mean);
        model = optim.step(3e-3, model, grads);
    }
    // Measured: 0.14 in the first five steps, 0.41 in the last five (each query samples its own
    // random numbers; when both drew the same ones, 0.04 and 0.40).
    let first = means[..5].iter().sum::<f64>() / 5.0;
    let last = means[35..].iter().sum::<f64>() / 5.0;
    assert!(last > first + 0.2, "mean keyword reward by step: {means:?}");
}

#[test]
fn infonce_masks_an_item_that_is_a_positive_of_the_query_too() {
    let KeywordTask { tokenizer, model, mut queries, prompts, rewards, settings } = keyword_task();
    let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 3, seed: 1 };
    let rollouts = sample(&model.valid(), &tokenizer, &prompts, &params, settings.end_think, settings.emb).unwrap();
    let infonce =
        |queries: &[RlQuery]| grpo_gradients(&model, &rewards, queries, &rollouts, &settings, Share::WHOLE).1.infonce;
    let apart = infonce(&queries);
    // Query 1's item is relevant to query 0 too: for query 0's samples it is no negative, which
    // leaves them only their positive (a loss of 0), so the mean is query 1's half alone.
    let (id0, id1) = (queries[0].item_id, queries[1].item_id);
    queries[0].positives.push(id1);
    let shared = infonce(&queries);
    assert!(apart > 1e-3 && shared < apart, "{shared} vs {apart}");
    queries[0].positives.pop();
    queries[1].positives.push(id0);
    let both = infonce(&queries);
    assert!((shared + both - apart).abs() < 1e-4, "each query's half: {shared} + {both} vs {apart}");
}

/// An RL config over the toy triples (as the cold-start split) and a tiny exported decoder: G = 4,
/// budget 4, 2 queries a step, no warmup, the collapse guard off (a random model never closes
/// its CoT, and the guard would stop it at once).
fn tiny_rl_config(dir: &std::path::Path, seed: u64) -> lrem_trainer::rl::config::RlConfig {
    use lrem_trainer::triples::{self, Split};

    let run = dir.join("pipeline-run");
    triples::write(&run, Split::ColdStart, &crate::train::toy_triples()).unwrap();
    let model = crate::train::tiny_model_dir(dir, seed);
    std::fs::write(model.join("lrem.json"), r#"{"system_prompt": ""}"#).unwrap();
    let mut config = lrem_trainer::rl::config::RlConfig::default();
    config.model = model;
    config.data.run_dir = run;
    config.data.split = "cold_start".into();
    config.rollout.group = 4;
    config.rollout.budget = 4;
    config.optim.batch_size = 2;
    config.optim.grad_accum = 1;
    config.optim.epochs = 1;
    config.optim.warmup_ratio = 0.0;
    config.guard.max_format_failure = 1.0;
    config.guard.min_entropy = 0.0;
    config
}

/// `lrem-train rl` end to end on a tiny model: 4 steps straight, and 2 + `--resume` 2, give the
/// same metrics line for line; the end exports a model folder with `lrem.json`.
#[test]
fn rl_run_resumes_to_the_same_metrics_and_exports_the_model() {
    use lrem_trainer::rl::run::rl;
    use lrem_trainer::train::RunOptions;

    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_rl_config(dir.path(), 4);
    config.optim.lr = 1e-3;
    config.optim.epochs = 2;
    config.checkpoint.every_steps = 1;
    config.checkpoint.keep = 10;
    let device = Default::default();
    let lines = |out: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for timing in ["rollout_tokens_per_s", "update_tokens_per_s", "elapsed_s"] {
                    v.as_object_mut().unwrap().remove(timing);
                }
                v
            })
            .collect()
    };
    let straight = dir.path().join("straight");
    let full = rl::<CpuAutodiff>(&config, &straight, &RunOptions::default(), &device).unwrap();
    assert_eq!((full.state.step, full.state.total_steps), (4, 4));
    let exported = full.model_dir.expect("a finished run exports its model");
    assert!(exported.join("lrem.json").exists() && exported.join("model.safetensors").exists());
    let curves = std::fs::read_to_string(straight.join("curves.svg")).unwrap();
    assert!(curves.contains("mean reward") && curves.contains("retrieval"), "{curves}");

    let resumed = dir.path().join("resumed");
    let half = RunOptions { stop_after: Some(2), ..Default::default() };
    let first = rl::<CpuAutodiff>(&config, &resumed, &half, &device).unwrap();
    assert!(first.model_dir.is_none() && first.state.step == 2);
    let again = RunOptions { resume: true, ..Default::default() };
    rl::<CpuAutodiff>(&config, &resumed, &again, &device).unwrap();
    let (a, b) = (lines(&straight), lines(&resumed));
    assert_eq!(a.len(), 4);
    assert_eq!(a, b);
    // Every sample of the step's 2 queries (up to `log.completions`), each step once after the
    // resume, with what it earned.
    let completions = |out: &std::path::Path| std::fs::read_to_string(out.join("completions.jsonl")).unwrap();
    assert_eq!(completions(&straight), completions(&resumed));
    let first: Vec<serde_json::Value> =
        completions(&straight).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(first.len(), 4 * 2 * 4);
    let sample = &first[0];
    assert!(sample["completion"].is_string() && sample["rewards"]["retrieval"].is_number(), "{sample}");
    assert!(sample["advantage"].is_number() && sample["rank"].as_u64().unwrap() >= 1, "{sample}");
    assert!(a[0]["rewards"].as_array().unwrap().len() == 3 && a[0]["zero_advantage_groups"].is_number(), "{}", a[0]);
}

/// `rewards.ranked_items` tops the step's items up with other queries' positives, up to the
/// split's distinct items (10 in the toy triples), and the metrics say how many were ranked.
#[test]
fn the_retrieval_reward_ranks_among_the_configured_number_of_items() {
    use lrem_trainer::rl::run::rl;
    use lrem_trainer::train::RunOptions;

    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_rl_config(dir.path(), 4);
    config.optim.max_steps = 2;
    let mut ranked = |wanted: usize| -> Vec<u64> {
        config.rewards.ranked_items = wanted;
        let out = dir.path().join(format!("ranked-{wanted}"));
        rl::<CpuAutodiff>(&config, &out, &RunOptions::default(), &Default::default()).unwrap();
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ranked_items"].as_u64().unwrap())
            .collect()
    };
    assert!(ranked(0).iter().all(|&n| n == 1 || n == 2), "the step's two drawn items, or one shared");
    assert_eq!(ranked(6), [6, 6]);
    assert_eq!(ranked(100), [10, 10]);
}

/// The retrieval reward through the whole step (rollouts, embeddings, ranks, advantages, the
/// clipped objective and γ2·InfoNCE at the paper's 0.1) rises over 20 seeded steps. On a random
/// decoder the rise comes from InfoNCE telling the queries' prompts apart, not from the CoT: with
/// InfoNCE off, the policy gradient alone moved the embeddings (they share the decoder) more
/// than it taught a CoT, and the reward did not rise reliably (docs/trainer.md).
#[test]
fn grpo_with_infonce_raises_the_retrieval_reward() {
    use lrem_trainer::rl::rewards::Retrieval;

    let (tokenizer, mut model) = tiny_policy(21);
    let (end_think, emb) = (tokenizer.token_id(END_THINK).unwrap(), tokenizer.token_id(EMB).unwrap());
    let queries = toy_queries(
        &tokenizer,
        &[
            ("something stronger than tea", "Casa Oro dark roast coffee 500g"),
            ("a mug for the office", "Stoneware mug 350 ml"),
            ("shoes for a marathon", "Stride road running shoes"),
        ],
    );
    let prompts: Vec<Vec<u32>> = queries.iter().map(|q| q.prompt.clone()).collect();
    let rewards = Rewards { funcs: vec![(Box::new(Retrieval), 1.0)] };
    let settings = UpdateSettings::new(8, end_think, emb, tokenizer.stop_ids());
    let optim_config = OptimConfig { weight_decay: 0.0, ..Default::default() };
    let mut optim = adamw(&optim_config).init::<CpuAutodiff, Decoder<CpuAutodiff>>();
    let mut means = Vec::new();
    for step in 0..20 {
        let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 2, seed: step };
        let rollouts = sample(&model.valid(), &tokenizer, &prompts, &params, end_think, emb).unwrap();
        let (grads, stats) = grpo_gradients(&model, &rewards, &queries, &rollouts, &settings, Share::WHOLE);
        means.push(stats.reward_mean);
        model = optim.step(1e-3, model, grads);
    }
    let first = means[..3].iter().sum::<f64>() / 3.0;
    let last = means[17..].iter().sum::<f64>() / 3.0;
    assert!(last > first + 0.25, "mean retrieval reward by step: {means:?}");
}

/// Reusing a rollout batch: the first update is on-policy (nothing is clipped, and its
/// log-probabilities are the sampler's); after a large step, the second update's ratios leave
/// the clip range on some samples.
#[test]
fn a_second_update_over_the_same_rollouts_is_clipped() {
    let KeywordTask { tokenizer, mut model, queries, prompts, rewards, settings } = keyword_task();
    // The first seed whose rollouts find a keyword somewhere: a batch without one has no
    // advantage to update on.
    let (rollouts, mut batch) = (1..20)
        .map(|seed| {
            let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 3, seed };
            let rollouts =
                sample(&model.valid(), &tokenizer, &prompts, &params, settings.end_think, settings.emb).unwrap();
            let batch = score_rollouts(&model, None, &rewards, &queries, &rollouts, &settings);
            (rollouts, batch)
        })
        .find(|(_, batch)| batch.stats.zero_advantage_groups < 2)
        .expect("no seed in 1..20 samples a keyword");
    let (grads, first) = update_gradients(&model, &mut batch, &queries, &rollouts, &settings, Share::WHOLE);
    assert_eq!(first.clip_fraction, 0.0);
    // The update reads the sampled tokens' log-probabilities from the rows it embeds with: the
    // same values the sampler stored (the entropy estimate is their negated mean).
    let stored: Vec<f32> = rollouts.iter().flat_map(|r| r.logprobs.iter().copied()).collect();
    let stored = -stored.iter().map(|&l| l as f64).sum::<f64>() / stored.len() as f64;
    assert!((first.entropy - stored).abs() < 1e-4, "update {} vs sampler {stored}", first.entropy);
    let mut optim = adamw(&OptimConfig { weight_decay: 0.0, ..Default::default() }).init();
    model = optim.step(3e-2, model, grads);
    let (_, second) = update_gradients(&model, &mut batch, &queries, &rollouts, &settings, Share::WHOLE);
    assert!(second.clip_fraction > 0.0, "{second:?}");
}

/// A step split into micro-batches of unequal size (one query, then two) accumulates the same
/// gradients as the whole batch: the token-mean objective is a mean over every token of the
/// step, not a mean of the micro-batches' means. InfoNCE is off: its negatives are the
/// micro-batch's items, so it differs by design.
#[test]
fn micro_batches_weighted_by_their_share_of_tokens_give_the_whole_batchs_gradients() {
    use burn::module::Module;

    // A reward most groups vary on: the parity of the first sampled id.
    struct Parity;
    impl Reward for Parity {
        fn name(&self) -> &str {
            "parity"
        }
        fn score(&self, s: &Sample<'_>) -> f64 {
            s.ids.first().map_or(0.0, |&id| (id % 2) as f64)
        }
    }
    let rewards = Rewards { funcs: vec![(Box::new(Parity), 1.0)] };
    let (tokenizer, model) = tiny_policy(9);
    let pairs =
        [("something stronger than tea", "Ground coffee"), ("a mug", "Stoneware mug"), ("warm socks", "Wool socks")];
    let queries = toy_queries(&tokenizer, &pairs);
    let prompts: Vec<Vec<u32>> = queries.iter().map(|q| q.prompt.clone()).collect();
    let mut settings = UpdateSettings::new(
        8,
        tokenizer.token_id(END_THINK).unwrap(),
        tokenizer.token_id(EMB).unwrap(),
        tokenizer.stop_ids(),
    );
    settings.infonce_weight = 0.0;
    let values = |grads: &burn::optim::GradientsParams| {
        let mut v = Values { grads: Some(grads), out: Vec::new() };
        model.visit(&mut v);
        v.out
    };
    let sum = |a: &[Vec<f32>], b: &[Vec<f32>]| -> Vec<Vec<f32>> {
        a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect()
    };
    let rollouts = (1..40)
        .map(|seed| {
            let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 3, seed };
            sample(&model.valid(), &tokenizer, &prompts, &params, settings.end_think, settings.emb).unwrap()
        })
        .find(|rollouts| {
            score_rollouts(&model, None, &rewards, &queries, rollouts, &settings).stats.zero_advantage_groups == 0
        })
        .expect("no seed in 1..40 gives every group an advantage");
    let (whole, _) = grpo_gradients(&model, &rewards, &queries, &rollouts, &settings, Share::WHOLE);
    let whole = values(&whole);

    // Micro-batch 0 holds query 0, micro-batch 1 queries 1 and 2 (renumbered from 0).
    let (first, rest): (Vec<Rollout>, Vec<Rollout>) = rollouts.iter().cloned().partition(|r| r.query == 0);
    let rest: Vec<Rollout> = rest.into_iter().map(|r| Rollout { query: r.query - 1, ..r }).collect();
    let micro = [(&queries[..1], first), (&queries[1..], rest)];
    let gradients_with = |shares: &[Share]| {
        let parts: Vec<Vec<Vec<f32>>> = micro
            .iter()
            .zip(shares)
            .map(|((qs, rs), &share)| values(&grpo_gradients(&model, &rewards, qs, rs, &settings, share).0))
            .collect();
        sum(&parts[0], &parts[1])
    };
    let shares = Share::of(&[micro[0].1.as_slice(), micro[1].1.as_slice()]);
    assert!(shares[0].tokens < 0.5 && (shares[0].tokens + shares[1].tokens - 1.0).abs() < 1e-12, "{shares:?}");
    let gap = relative_gap(&whole, &gradients_with(&shares));
    assert!(gap < 1e-4, "gradients differ by {gap} of their scale");
    // The old weighting (each micro-batch's own token mean, averaged over micro-batches) does not.
    let even = Share { tokens: 0.5, samples: 0.5 };
    assert!(relative_gap(&whole, &gradients_with(&[even, even])) > 1e-2);
}

/// A step scored in micro-batches ranks every sample among the whole step's items and scales
/// its advantages by the step's deviation (`Scaling::Batch`): the rewards and advantages of
/// scoring it whole. Ranked within its own micro-batch of one query, every sample ranked first
/// and the group had no advantage: what ranking over the step fixes.
#[test]
fn a_step_scored_in_micro_batches_ranks_and_scales_as_the_whole_step() {
    use lrem_trainer::rl::advantage::Scaling;
    use lrem_trainer::rl::rewards::Retrieval;

    let (tokenizer, model) = tiny_policy(9);
    let pairs =
        [("something stronger than tea", "Ground coffee"), ("a mug", "Stoneware mug"), ("warm socks", "Wool socks")];
    let queries = toy_queries(&tokenizer, &pairs);
    let prompts: Vec<Vec<u32>> = queries.iter().map(|q| q.prompt.clone()).collect();
    let (end_think, emb) = (tokenizer.token_id(END_THINK).unwrap(), tokenizer.token_id(EMB).unwrap());
    let mut settings = UpdateSettings::new(8, end_think, emb, tokenizer.stop_ids());
    settings.scaling = Scaling::Batch;
    let rewards = Rewards { funcs: vec![(Box::new(Retrieval), 1.0)] };
    let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 3, seed: 1 };
    let rollouts = sample(&model.valid(), &tokenizer, &prompts, &params, end_think, emb).unwrap();
    let whole = score_rollouts(&model, None, &rewards, &queries, &rollouts, &settings);
    assert!(whole.totals()[..8].iter().any(|&r| r < 1.0), "{:?}", whole.totals());

    let (first, rest): (Vec<Rollout>, Vec<Rollout>) = rollouts.iter().cloned().partition(|r| r.query == 0);
    let rest: Vec<Rollout> = rest.into_iter().map(|r| Rollout { query: r.query - 1, ..r }).collect();
    let ranked = RankedItems::of(&model.valid(), &queries);
    let mut parts = [
        score_rollouts_among(&model, None, &rewards, &queries[..1], &first, &ranked, &settings),
        score_rollouts_among(&model, None, &rewards, &queries[1..], &rest, &ranked, &settings),
    ];
    advantages_over_step(parts.iter_mut(), 8, Scaling::Batch);
    let joined = |f: fn(&lrem_trainer::rl::step::ScoredBatch) -> &[f64]| -> Vec<f64> {
        parts.iter().flat_map(|b| f(b).to_vec()).collect()
    };
    let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    assert!(close(&joined(|b| b.totals()), whole.totals()));
    assert!(
        close(&joined(|b| b.advantages()), whole.advantages()),
        "{:?} vs {:?}",
        joined(|b| b.advantages()),
        whole.advantages()
    );

    let alone = score_rollouts(&model, None, &rewards, &queries[..1], &first, &settings);
    assert!(alone.totals().iter().all(|&r| r == 1.0) && alone.stats.zero_advantage_groups == 1);

    // Positives are items, not queries: a query whose positives include every ranked item's id
    // ranks first whatever it wrote.
    let mut shared = queries.clone();
    for q in &mut shared {
        q.positives = vec![0, 1, 2];
    }
    let all_positive = score_rollouts(&model, None, &rewards, &shared, &rollouts, &settings);
    assert!(all_positive.totals().iter().all(|&r| r == 1.0));
}

#[test]
fn a_policy_update_recomputed_layer_by_layer_has_the_same_gradients() {
    use burn::module::Module;

    let KeywordTask { tokenizer, model, queries, prompts, rewards, mut settings } = keyword_task();
    let params = RolloutParams { group: 8, temperature: 1.0, top_k: 8, top_p: 1.0, budget: 3, seed: 2 };
    let rollouts = sample(&model.valid(), &tokenizer, &prompts, &params, settings.end_think, settings.emb).unwrap();
    let mut update = |recompute| {
        settings.recompute = recompute;
        let mut batch = score_rollouts(&model, None, &rewards, &queries, &rollouts, &settings);
        let (grads, stats) = update_gradients(&model, &mut batch, &queries, &rollouts, &settings, Share::WHOLE);
        let mut v = Values { grads: Some(&grads), out: Vec::new() };
        model.visit(&mut v);
        (v.out, stats)
    };
    let (plain, p) = update(false);
    let (recomputed, r) = update(true);
    assert!((p.objective - r.objective).abs() < 1e-6 && (p.infonce - r.infonce).abs() < 1e-5, "{p:?} vs {r:?}");
    let gap = relative_gap(&plain, &recomputed);
    assert!(gap < 1e-4, "gradients differ by {gap} of their scale");
}

/// Several policy updates per rollout batch and a KL reference: the first update of the first
/// step is the reference itself (KL 0), so the step's logged KL is above 0 only if the later
/// updates were made.
#[test]
fn rl_with_several_updates_per_rollout_moves_off_the_kl_reference() {
    use lrem_trainer::rl::run::rl;
    use lrem_trainer::train::RunOptions;

    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_rl_config(dir.path(), 6);
    config.rollout.updates_per_rollout = 3;
    config.loss.kl_weight = 0.1;
    config.optim.lr = 1e-2;
    config.optim.max_steps = 2;
    let out = dir.path().join("rl");
    let outcome = rl::<CpuAutodiff>(&config, &out, &RunOptions::default(), &Default::default()).unwrap();
    assert!(outcome.model_dir.is_some());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let kl: Vec<f64> = lines.iter().map(|l| l["kl"].as_f64().expect("KL is logged when β_KL > 0")).collect();
    assert!(kl[0] > 0.0 && kl[1] > 0.0, "KL by step: {kl:?}");
}
