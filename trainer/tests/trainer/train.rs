//! Cold-start training on a tiny random decoder with SmolLM2's real tokenizer (CPU, seconds):
//! the losses against hand computations, the NTP mask, batching, GradCache against the plain
//! full-batch gradient, resume, the non-finite guard, and the export `serve` loads.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use lrem_trainer::backend::{Cpu, CpuAutodiff};
use lrem_trainer::format::TOKENS as LREM_TOKENS;
use lrem_trainer::format::{NewTokenInit, Prompting, QuerySequence};
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::decoder::DecoderConfig;
use lrem_trainer::model::export::export_random_decoder;
use lrem_trainer::model::gguf::GgufFile;
use lrem_trainer::model::layers::{host, tensor};
use lrem_trainer::model::tokenizer::TextTokenizer;
use lrem_trainer::train::config::TrainConfig;
use lrem_trainer::train::data::{Example, epoch_batches, prepare};
use lrem_trainer::train::loss::{info_nce, info_nce_items_where, ntp_targets};
use lrem_trainer::train::step::{Memory, batch_gradients};
use lrem_trainer::train::{RunOptions, cold_start};
use lrem_trainer::triples::{self, Split, Triple};

use crate::smollm2;

fn base_tokenizer() -> TextTokenizer {
    TextTokenizer::from_gguf(&GgufFile::open(&smollm2()).expect("make models installs SmolLM2")).unwrap()
}

pub(crate) fn tokenizer() -> TextTokenizer {
    let mut t = base_tokenizer();
    t.add_special_tokens(&LREM_TOKENS);
    t
}

pub(crate) fn toy_triples() -> Vec<Triple> {
    let queries = [
        ("a drink more energizing than tea", "coffee, caffeine"),
        ("keeps food cold on a picnic", "cooler, ice pack"),
        ("quiet keyboard for the office", "silent switches"),
        ("gift for a dog that chews everything", "tough chew toy"),
    ];
    let titles = [
        ["Casa Oro dark roast coffee 500g", "Voltara energy drink 4-pack", "Hollowmere espresso capsules"],
        ["Frostline picnic cooler 20L", "Chillpak reusable ice packs", "Voltara energy drink 4-pack"],
        ["Hushkey silent mechanical keyboard", "Softtype membrane keyboard", "Deskmate wrist rest"],
        ["Rufftuff rubber chew bone", "Barkbox rope toy", "Chillpak reusable ice packs"],
    ];
    let mut out = Vec::new();
    for (q, ((query, cot), items)) in queries.iter().zip(&titles).enumerate() {
        for title in items {
            let item_id = 1000 + titles.iter().flatten().position(|t| t == title).unwrap() as i64;
            out.push(Triple {
                query_id: 10 + q as u64,
                query: query.to_string(),
                cot: cot.to_string(),
                item_id,
                title: title.to_string(),
                relevance: 1.0,
            });
        }
    }
    out
}

/// A tiny random decoder over SmolLM2's vocabulary, saved as an HF folder (training adds the
/// LREM tokens, as it does to a real base model).
pub(crate) fn tiny_model_dir(dir: &Path, seed: u64) -> PathBuf {
    let tokenizer = base_tokenizer();
    let out = dir.join("tiny");
    export_random_decoder(&DecoderConfig::tiny(tokenizer.vocab_size()), &tokenizer, seed, &out).unwrap();
    out
}

/// The first six toy triples as training examples (several share a query, so InfoNCE masks).
pub(crate) fn toy_examples() -> Vec<Example> {
    let tok = tokenizer();
    let p = Prompting { tokenizer: &tok, system_prompt: Some(String::new()) };
    prepare(&toy_triples()[..6], &p, 128, 128).unwrap().examples
}

/// [`tiny_model_dir`]'s decoder loaded with the LREM tokens, as training loads a base model.
fn tiny_lrem_model(dir: &Path, seed: u64) -> LanguageModel<CpuAutodiff> {
    LanguageModel::<CpuAutodiff>::load(&tiny_model_dir(dir, seed), &Default::default()).unwrap().add_lrem_tokens()
}

pub(crate) fn toy_config(dir: &Path) -> TrainConfig {
    let run = dir.join("pipeline-run");
    triples::write(&run, Split::ColdStart, &toy_triples()).unwrap();
    let mut c = TrainConfig::default();
    c.model.path = tiny_model_dir(dir, 3);
    c.model.system_prompt = Some(String::new());
    c.data.run_dir = run;
    c.optim.lr = 3e-3;
    c.optim.batch_size = 4;
    c.optim.grad_accum = 1;
    c.optim.chunk_size = 2;
    c.optim.epochs = 6;
    c.optim.warmup_ratio = 0.0;
    c.checkpoint.every_steps = 2;
    c.checkpoint.keep = 10;
    c
}

#[test]
fn info_nce_matches_a_hand_computation() {
    let device = Default::default();
    let q = [[1.0f64, 0.0], [0.0, 2.0], [1.0, 1.0]];
    let d = [[3.0f64, 0.0], [1.0, 1.0], [0.0, 1.0]];
    let unit = |v: [f64; 2]| {
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        [v[0] / n, v[1] / n]
    };
    let tau = 0.5;
    let expected = |groups: [u64; 3]| {
        let mut total = 0.0;
        for i in 0..3 {
            let s: Vec<f64> = (0..3)
                .map(|j| {
                    let (a, b) = (unit(q[i]), unit(d[j]));
                    (a[0] * b[0] + a[1] * b[1]) / tau
                })
                .collect();
            let lse = (0..3).filter(|&j| j == i || groups[j] != groups[i]).map(|j| s[j].exp()).sum::<f64>().ln();
            total += lse - s[i];
        }
        total / 3.0
    };
    let flat = |m: [[f64; 2]; 3]| m.iter().flatten().map(|&x| x as f32).collect::<Vec<_>>();
    let qt = tensor::<Cpu, 2>(flat(q), [3, 2], &device);
    let dt = tensor::<Cpu, 2>(flat(d), [3, 2], &device);
    for groups in [[1, 2, 3], [1, 1, 2]] {
        let got = host(info_nce(qt.clone(), dt.clone(), &groups, tau, false))[0] as f64;
        assert!((got - expected(groups)).abs() < 1e-5, "groups {groups:?}: {got} vs {}", expected(groups));
    }
}

/// GRPO's InfoNCE: G samples of a query against the B items, each item once. G identical samples
/// per query must give the loss of one sample per query: an item repeated per sample (as before
/// this test) counted every negative G times, ln G more in every denominator.
#[test]
fn info_nce_over_samples_counts_each_item_once() {
    let device = Default::default();
    let (b, g, h) = (3usize, 4usize, 5usize);
    let q: Vec<f32> = (0..b * h).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
    let d: Vec<f32> = (0..b * h).map(|i| ((i * 5 % 13) as f32 - 6.0) / 4.0).collect();
    let t = |v: &[f32], rows: usize| tensor::<Cpu, 2>(v.to_vec(), [rows, h], &device);
    let ids = [10u64, 20, 30];
    let one = host(info_nce(t(&q, b), t(&d, b), &ids, 0.1, false))[0];
    let repeated: Vec<f32> = (0..b * g).flat_map(|s| q[s / g * h..(s / g + 1) * h].to_vec()).collect();
    let positive: Vec<usize> = (0..b * g).map(|s| s / g).collect();
    let sample_ids: Vec<u64> = positive.iter().map(|&i| ids[i]).collect();
    let same_query = |i: usize, j: usize| sample_ids[i] == ids[j];
    let got = host(info_nce_items_where(t(&repeated, b * g), t(&d, b), &positive, same_query, 0.1))[0];
    assert!((got - one).abs() < 1e-5, "G samples {got} vs one sample {one}");
    let items_repeated: Vec<f32> = (0..b * g).flat_map(|s| d[s / g * h..(s / g + 1) * h].to_vec()).collect();
    let square = host(info_nce(t(&repeated, b * g), t(&items_repeated, b * g), &sample_ids, 0.1, false))[0];
    assert!(square > one + 0.1, "the repeated items weigh each negative G times: {square} vs {one}");
    // Two queries sharing an id: each one's item is masked for the other, as in the square form.
    let shared = [10u64, 10, 30];
    let masked = host(info_nce_items_where(t(&q, b), t(&d, b), &[0, 1, 2], |i, j| shared[i] == shared[j], 0.1))[0];
    let square = host(info_nce(t(&q, b), t(&d, b), &shared, 0.1, false))[0];
    assert!((masked - square).abs() < 1e-5, "{masked} vs {square}");
    // A masked item is as if absent: query 0 against items 0 and 2.
    let without = |cols: &[usize]| cols.iter().flat_map(|&j| d[j * h..(j + 1) * h].to_vec()).collect::<Vec<f32>>();
    let masked = host(info_nce_items_where(t(&q[..h], 1), t(&d, b), &[0], |_, j| j == 1, 1.0))[0];
    let absent = host(info_nce_items_where(t(&q[..h], 1), t(&without(&[0, 2]), 2), &[0], |_, _| false, 1.0))[0];
    assert!((masked - absent).abs() < 1e-5, "{masked} vs {absent}");
    let unmasked = host(info_nce_items_where(t(&q[..h], 1), t(&d, b), &[0], |_, _| false, 1.0))[0];
    assert!((unmasked - absent).abs() > 1e-3, "item 1 is a negative when not masked");
}

#[test]
fn ntp_covers_the_cot_and_end_think_only() {
    let tok = tokenizer();
    let p = Prompting { tokenizer: &tok, system_prompt: Some(String::new()) };
    let seq = p.query_sequence("a drink more energizing than tea", "coffee, caffeine").unwrap();
    assert_eq!(seq.ids[seq.first_target - 1], tok.token_id("<think>").unwrap());
    assert_eq!(seq.ids[seq.first_target..], tok.encode("coffee, caffeine</think><emb>", false).unwrap()[..]);
    // `<emb>` ends the sequence but is no target: nothing generates it.
    assert_eq!(*seq.ids.last().unwrap(), tok.token_id("<emb>").unwrap());
    assert_eq!(seq.ids[seq.targets()], tok.encode("coffee, caffeine</think>", false).unwrap()[..]);
    assert!(p.direct_sequence("a drink more energizing than tea").unwrap().targets().is_empty());
    let item = p.item_sequence("Casa Oro dark roast coffee 500g").unwrap();
    assert_eq!(*item.last().unwrap(), tok.token_id("<emb>").unwrap());
    // Left padding: row 0 (length 5, targets 3..5) is padded by 2 in a batch of length 7.
    let (rows, ids) = ntp_targets(&[(&[1, 2, 3, 4, 5], 3..5), (&[6, 7, 8, 9, 10, 11, 12], 5..7)]);
    assert_eq!(rows, [2 + 2, 2 + 3, 7 + 4, 7 + 5]);
    assert_eq!(ids, [4, 5, 11, 12]);
}

#[test]
fn end_think_starts_as_the_end_of_turn_token() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = tiny_model_dir(dir.path(), 1);
    let load = || LanguageModel::<Cpu>::load(&model_dir, &Default::default()).unwrap();
    // Row `id` of the `[hidden, vocab]` embedding.
    let row = |lm: &LanguageModel<Cpu>, token: &str| -> Vec<f32> {
        let id = lm.tokenizer.token_id(token).unwrap() as usize;
        let [h, v] = lm.model.embed.val().dims();
        let w = host(lm.model.embed.val());
        (0..h).map(|d| w[d * v + id]).collect()
    };
    let base = load();
    let [h, v] = base.model.embed.val().dims();
    let w = host(base.model.embed.val());
    let mean: Vec<f32> =
        (0..h).map(|d| w[d * v..(d + 1) * v].iter().map(|&x| x as f64).sum::<f64>() as f32 / v as f32).collect();
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);

    let lm = load().add_lrem_tokens();
    assert_eq!(lm.config.vocab_size, v + 3);
    assert!(close(&row(&lm, "</think>"), &row(&lm, "<|im_end|>")));
    assert!(close(&row(&lm, "<think>"), &mean) && close(&row(&lm, "<emb>"), &mean));
    assert!(!close(&mean, &row(&lm, "<|im_end|>")));
    // The tied head scores `</think>` as it scores the end of turn.
    let ids = lm.tokenizer.encode("keeps food cold", false).unwrap();
    let logits = host(lm.model.logits(lm.model.forward(&[ids.clone()], &[vec![true; ids.len()]], None)));
    let last = &logits[logits.len() - (v + 3)..];
    let (end, eot) = (lm.tokenizer.token_id("</think>").unwrap(), lm.tokenizer.token_id("<|im_end|>").unwrap());
    assert!((last[end as usize] - last[eot as usize]).abs() < 1e-4);

    let lm = load().add_lrem_tokens_as(NewTokenInit::Mean);
    assert!(close(&row(&lm, "</think>"), &mean));
    // An LREM model's rows are kept as they are.
    let again = lm.add_lrem_tokens();
    assert_eq!(again.config.vocab_size, v + 3);
    assert!(close(&row(&again, "</think>"), &mean));
}

#[test]
fn batches_hold_every_example_once_and_no_item_twice() {
    let examples: Vec<Example> = (0..40)
        .map(|i| Example {
            query_id: i / 3,
            item_id: (i % 7) as i64,
            query: QuerySequence { ids: vec![1; 5 + (i as usize % 4)], first_target: 2 },
            item: vec![2; 4],
        })
        .collect();
    for epoch in 0..3 {
        let batches = epoch_batches(&examples, 5, 2, 9, epoch);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        for b in &batches {
            let mut items: Vec<i64> = b.iter().map(|&i| examples[i].item_id).collect();
            items.sort();
            items.dedup();
            assert_eq!(items.len(), b.len(), "an item twice in {b:?}");
        }
    }
    assert_ne!(epoch_batches(&examples, 5, 2, 9, 0), epoch_batches(&examples, 5, 2, 9, 1));
}

struct Collect<'g> {
    grads: &'g GradientsParams,
    out: Vec<Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let g = self.grads.get::<B::InnerBackend, D>(param.id).expect("every parameter has a gradient");
        self.out.push(host(g));
    }
}

#[test]
fn gradcache_and_layer_recompute_give_the_full_batch_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let examples = toy_examples();
    let batch: Vec<&Example> = examples.iter().collect();
    let lm = tiny_lrem_model(dir.path(), 5);
    assert_eq!(lm.tokenizer.vocab_size(), tokenizer().vocab_size());
    let mut loss = TrainConfig::default().loss;
    loss.symmetric = true;
    let grads_of = |memory: Memory| {
        let (grads, parts) = batch_gradients(&lm.model, &batch, &loss, memory, 0.5);
        let mut c = Collect { grads: &grads, out: Vec::new() };
        lm.model.visit(&mut c);
        (c.out, parts)
    };
    let (full, full_parts) = grads_of(Memory::from(0));
    let recompute = |chunk| Memory { chunk, recompute: true };
    for memory in [Memory::from(1), Memory::from(4), recompute(0), recompute(4)] {
        let (cached, parts) = grads_of(memory);
        assert!((parts.infonce - full_parts.infonce).abs() < 1e-5 && (parts.ntp - full_parts.ntp).abs() < 1e-5);
        let scale = full.iter().flatten().fold(0f32, |m, g| m.max(g.abs()));
        assert!(scale > 0.0);
        for (a, b) in full.iter().zip(&cached) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 * scale, "{memory:?}: {x} vs {y} (scale {scale})");
            }
        }
    }
}

#[test]
fn gradient_checkpointing_follows_the_plain_loss_curve() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    config.optim.epochs = 2;
    let curve = |config: &TrainConfig, name: &str| -> Vec<f64> {
        let out =
            cold_start::<CpuAutodiff>(config, &dir.path().join(name), &RunOptions::default(), &Default::default())
                .unwrap();
        out.records.iter().map(|r| r.loss).collect()
    };
    let plain = curve(&config, "plain");
    config.optim.gradient_checkpointing = true;
    let recomputed = curve(&config, "recomputed");
    let resolved = std::fs::read_to_string(dir.path().join("recomputed/config.toml")).unwrap();
    assert!(resolved.contains("gradient_checkpointing = true"), "{resolved}");
    assert!(plain.len() >= 4 && plain.len() == recomputed.len());
    for (step, (a, b)) in plain.iter().zip(&recomputed).enumerate() {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "step {step}: {a} vs {b}");
    }
}

#[test]
fn loss_decreases_and_the_export_loads() {
    let dir = tempfile::tempdir().unwrap();
    let config = toy_config(dir.path());
    let out = cold_start::<CpuAutodiff>(&config, &dir.path().join("run"), &RunOptions::default(), &Default::default())
        .unwrap();
    let losses: Vec<f64> = out.records.iter().map(|r| r.loss).collect();
    assert_eq!(losses.len(), out.state.total_steps);
    let first: f64 = losses[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.8 * first, "loss did not decrease: {losses:?}");
    assert!(dir.path().join("run/curves.svg").exists());
    let model_dir = out.model_dir.unwrap();
    let lm = LanguageModel::<Cpu>::load(&model_dir, &Default::default()).unwrap();
    assert!(lm.tokenizer.token_id("<emb>").is_some());
    assert!(model_dir.join("lrem.json").exists());
}

#[test]
fn resume_reproduces_the_uninterrupted_curve() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    config.optim.epochs = 2;
    let device = Default::default();
    let whole = cold_start::<CpuAutodiff>(&config, &dir.path().join("whole"), &RunOptions::default(), &device).unwrap();
    let split = dir.path().join("split");
    let first = RunOptions { stop_after: Some(3), ..Default::default() };
    let part = cold_start::<CpuAutodiff>(&config, &split, &first, &device).unwrap();
    assert_eq!(part.state.step, 3);
    assert!(part.model_dir.is_none());
    let err = cold_start::<CpuAutodiff>(&config, &split, &RunOptions::default(), &device).err().unwrap().to_string();
    assert!(err.contains("--resume"), "{err}");
    let resumed =
        cold_start::<CpuAutodiff>(&config, &split, &RunOptions { resume: true, ..Default::default() }, &device)
            .unwrap();
    assert_eq!(resumed.records.len(), whole.records.len());
    for (a, b) in whole.records.iter().zip(&resumed.records) {
        assert_eq!(a.step, b.step);
        for (x, y) in
            [(a.loss, b.loss), (a.infonce, b.infonce), (a.ntp, b.ntp), (a.grad_norm, b.grad_norm), (a.lr, b.lr)]
        {
            assert!((x - y).abs() <= 1e-6, "step {}: {x} vs {y}", a.step);
        }
    }
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    config.checkpoint.every_steps = 1;
    let run = dir.path().join("run");
    let device = Default::default();
    cold_start::<CpuAutodiff>(&config, &run, &RunOptions { stop_after: Some(1), ..Default::default() }, &device)
        .unwrap();
    // A learning rate of 1e30 sends the weights to ±1e30 at step 2, and step 3's loss overflows.
    config.optim.lr = 1e30;
    let err = cold_start::<CpuAutodiff>(&config, &run, &RunOptions { resume: true, ..Default::default() }, &device)
        .err()
        .expect("the run must stop")
        .to_string();
    assert!(err.contains("non-finite loss at step 3") && err.contains("step-000002"), "{err}");
    assert!(!run.join("checkpoints/step-000003").exists());
    assert!(run.join("checkpoints/step-000002/state.json").exists());
}

#[test]
fn ctrl_c_checkpoints_the_step_in_progress_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    // Long enough that the interrupt lands mid-run; checkpoints only at the end otherwise.
    config.optim.epochs = 10_000;
    config.checkpoint.every_steps = 1_000_000;
    let config_path = dir.path().join("train.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let run = dir.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lrem-train"))
        .args(["cold-start", "--config"])
        .arg(&config_path)
        .arg("--run-dir")
        .arg(&run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = run.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2 {
        assert!(std::time::Instant::now() < deadline, "no training step within 120 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("continue with --resume"), "{stderr}");
    // The checkpoint holds the last step written to the metrics, and the run resumes from it.
    let steps = std::fs::read_to_string(&metrics).unwrap().lines().count();
    let saved = lrem_trainer::train::checkpoint::list(&run).unwrap();
    assert!(saved.last().unwrap().ends_with(format!("step-{steps:06}")), "{saved:?} after {steps} steps");
    let options = RunOptions { resume: true, stop_after: Some(steps + 1), ..Default::default() };
    let resumed = cold_start::<CpuAutodiff>(&config, &run, &options, &Default::default()).unwrap();
    assert_eq!(resumed.state.step, steps + 1);
}

#[test]
fn training_refuses_a_triple_whose_query_is_held_out_by_need() {
    use lrem_schemas::holdout::Holdout;
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    let needs = crate::root().join("data_samples/needs.parquet");
    config.data.needs = Some(needs.clone());
    // The toy queries are no phrasing of a need: training may see them.
    let first = RunOptions { stop_after: Some(1), ..Default::default() };
    cold_start::<CpuAutodiff>(&config, &dir.path().join("allowed"), &first, &Default::default()).unwrap();

    let split = lrem_trainer::holdout::read(&needs, config.data.holdout_seed).unwrap();
    for kind in [Holdout::UnseenNeed, Holdout::UnseenPhrasing, Holdout::Validation] {
        let (&held, _) = split.iter().find(|(_, h)| **h == kind).unwrap();
        let mut triples = toy_triples();
        triples[0].query_id = held;
        let run = dir.path().join(format!("pipeline-{}", kind.as_str()));
        triples::write(&run, Split::ColdStart, &triples).unwrap();
        config.data.run_dir = run;
        let out = dir.path().join(kind.as_str());
        let err = cold_start::<CpuAutodiff>(&config, &out, &first, &Default::default()).err().unwrap().to_string();
        assert!(err.contains("1 triples of 1 queries are held out from training by need"), "{err}");
        assert!(err.contains(&format!("({})", kind.as_str())), "{err}");
    }
}

#[test]
fn the_direct_baseline_trains_on_the_same_pairs_without_a_cot() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    config.optim.epochs = 2;
    config.data.cot = false;
    let err =
        cold_start::<CpuAutodiff>(&config, &dir.path().join("refused"), &RunOptions::default(), &Default::default());
    assert!(err.err().unwrap().to_string().contains("set loss.ntp_weight = 0"));
    config.loss.ntp_weight = 0.0;
    let out =
        cold_start::<CpuAutodiff>(&config, &dir.path().join("direct"), &RunOptions::default(), &Default::default())
            .unwrap();
    assert!(out.records.iter().all(|r| r.ntp == 0.0 && r.infonce.is_finite()));
    let model = lrem_trainer::lrem::LremModel::<lrem_trainer::backend::Cpu>::load(
        out.model_dir.as_ref().unwrap(),
        &Default::default(),
    )
    .unwrap();
    assert!(model.settings.direct);
    let embedded = model.embed_queries(&["a drink more energizing than tea"], 16, 4).unwrap();
    assert_eq!(embedded[0].cot, "");
    let norm: f32 = embedded[0].vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
}

#[test]
fn a_bf16_run_tracks_the_f32_loss_curve() {
    // On Burn's flex backend: candle has no bf16 product on CPUs.
    type FlexAutodiff = burn::backend::Autodiff<lrem_trainer::backend::Flex>;
    use lrem_trainer::model::precision::Precision;
    let dir = tempfile::tempdir().unwrap();
    let mut config = toy_config(dir.path());
    config.optim.epochs = 3;
    let mut curve = |precision, name: &str| -> Vec<f64> {
        config.model.precision = precision;
        let out =
            cold_start::<FlexAutodiff>(&config, &dir.path().join(name), &RunOptions::default(), &Default::default());
        out.unwrap().records.iter().map(|r| r.loss).collect()
    };
    let full = curve(Precision::F32, "f32");
    let half = curve(Precision::Bf16, "bf16");
    assert_eq!(full.len(), half.len());
    assert_ne!(full, half, "the bf16 run computed in f32");
    let gap = full.iter().zip(&half).map(|(a, b)| (a - b).abs() / a.abs()).fold(0f64, f64::max);
    eprintln!(
        "bf16 vs f32 over {} steps: largest relative loss gap {gap:.4}\n  f32  {full:.4?}\n  bf16 {half:.4?}",
        full.len()
    );
    assert!(gap < 0.06, "bf16 strays {gap} from f32: {full:?} vs {half:?}");
    assert!(half[half.len() - 1] < 0.8 * half[0], "bf16 did not learn: {half:?}");
    // candle has no bf16 product on CPUs: a clear error before any step, not a panic.
    config.model.precision = Precision::Bf16;
    let err =
        cold_start::<CpuAutodiff>(&config, &dir.path().join("candle"), &RunOptions::default(), &Default::default())
            .err()
            .expect("bf16 on candle's CPU backend must be refused")
            .to_string();
    assert!(err.contains("no bf16 products"), "{err}");
}

#[test]
fn fused_products_give_the_unfused_loss_and_gradients() {
    use lrem_trainer::model::layers::fuse_products;
    let dir = tempfile::tempdir().unwrap();
    let examples = toy_examples();
    let batch: Vec<&Example> = examples.iter().collect();
    // The tiny config has grouped-query attention and q/k/v biases.
    let lm = tiny_lrem_model(dir.path(), 7);
    let loss = TrainConfig::default().loss;
    let grads_of = |fused| {
        let _fused = fuse_products(fused);
        let (grads, parts) = batch_gradients(&lm.model, &batch, &loss, 0, 1.0);
        let mut c = Collect { grads: &grads, out: Vec::new() };
        lm.model.visit(&mut c);
        (c.out, parts)
    };
    let (plain, plain_parts) = grads_of(false);
    let (fused, fused_parts) = grads_of(true);
    assert!((plain_parts.total - fused_parts.total).abs() < 1e-5, "{plain_parts:?} vs {fused_parts:?}");
    let scale = plain.iter().flatten().fold(0f32, |m, g| m.max(g.abs()));
    for (a, b) in plain.iter().zip(&fused) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * scale, "{x} vs {y} (scale {scale})");
        }
    }
}
