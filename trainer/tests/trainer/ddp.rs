//! Data-parallel training against one process: the gathered InfoNCE's gradients summed over
//! ranks equal the whole batch's (ranks as threads), and ranks as processes of `lrem-train`
//! end with the parameters of one process on the same global batches, also when a run resumes
//! with another number of ranks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use lrem_trainer::backend::CpuAutodiff;
use lrem_trainer::dist::{Launch, ProcessGroup};
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::layers::host;
use lrem_trainer::train::config::TrainConfig;
use lrem_trainer::train::data::Example;
use lrem_trainer::train::step::{LossParts, Memory, batch_gradients, shard_gradients};
use lrem_trainer::train::sync::all_reduce_gradients;

use crate::train::{tiny_model_dir, toy_config, toy_examples};

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn group(rank: usize, world: usize, master: &str) -> ProcessGroup {
    let launch = Launch { world_size: world, rank, local_rank: 0, master: Some(master.to_string()) };
    ProcessGroup::connect(&launch, Duration::from_secs(60)).unwrap()
}

pub(crate) struct Values<'g> {
    pub(crate) grads: Option<&'g GradientsParams>,
    pub(crate) out: Vec<Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Values<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(match self.grads {
            Some(g) => g.get::<B::InnerBackend, D>(param.id).map(host).unwrap_or_default(),
            None => host(param.val()),
        });
    }
}

/// The largest difference, relative to the largest magnitude of `a`.
pub(crate) fn relative_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0);
    let gap = a.iter().zip(b).flat_map(|(x, y)| {
        assert_eq!(x.len(), y.len());
        x.iter().zip(y).map(|(p, q)| (p - q).abs())
    });
    gap.fold(0f32, f32::max) / scale
}

#[test]
fn gathered_infonce_gradients_summed_over_ranks_equal_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = tiny_model_dir(dir.path(), 5);
    let examples = toy_examples();
    let mut loss = TrainConfig::default().loss;
    loss.symmetric = true;
    let load = || LanguageModel::<CpuAutodiff>::load(&model_dir, &Default::default()).unwrap().add_lrem_tokens().model;
    // (world, examples, the ranks' memory levers): even shares, uneven shares, and a rank with no
    // rows; each against one process's plain whole-batch graph.
    let recompute = |chunk| Memory { chunk, recompute: true };
    let cases = [(2, 6, Memory::from(0)), (2, 6, Memory::from(2)), (3, 5, Memory::from(1)), (3, 2, Memory::from(0))];
    for (world, n, memory) in cases.into_iter().chain([(2, 6, recompute(2)), (3, 2, recompute(0))]) {
        let batch: Vec<&Example> = examples[..n].iter().collect();
        let model = load();
        let (whole, parts) = batch_gradients(&model, &batch, &loss, 0, 0.5);
        let mut v = Values { grads: Some(&whole), out: Vec::new() };
        model.visit(&mut v);
        let whole = v.out;
        let master = free_address();
        let whole_norm = {
            let (g, _) = batch_gradients(&model, &batch, &loss, 0, 0.5);
            lrem_trainer::train::optim::global_norm::<CpuAutodiff, _>(&model, &g)
        };
        let ranks: Vec<(Vec<Vec<f32>>, LossParts, f32, f64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let (master, batch, loss, load) = (&master, &batch, &loss, &load);
                    s.spawn(move || {
                        let group = group(rank, world, master);
                        let model = load();
                        let (grads, parts) = shard_gradients(&model, batch, loss, memory, 0.5, &group).unwrap();
                        let mut ntp = [parts.ntp as f32];
                        let (grads, norm) = all_reduce_gradients(&group, &model, grads, &mut ntp).unwrap();
                        let mut v = Values { grads: Some(&grads), out: Vec::new() };
                        model.visit(&mut v);
                        (v.out, parts, ntp[0], norm.expect("a group of several ranks sums a norm"))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, (grads, p, ntp, norm)) in ranks.iter().enumerate() {
            let case = format!("world {world}, {n} examples, {memory:?}, rank {rank}");
            assert!((p.infonce - parts.infonce).abs() < 1e-5, "{case}: InfoNCE {} vs {}", p.infonce, parts.infonce);
            assert!((*ntp as f64 - parts.ntp).abs() < 1e-5, "{case}: NTP {ntp} vs {}", parts.ntp);
            assert!((norm - whole_norm).abs() <= 1e-4 * whole_norm, "{case}: gradient norm {norm} vs {whole_norm}");
            let gap = relative_gap(&whole, grads);
            assert!(gap < 1e-4, "{case}: gradients differ by {gap} of their scale");
            // Every rank holds the same sum, bit for bit.
            assert_eq!(grads, &ranks[0].0, "{case}");
        }
    }
}

#[test]
fn the_ring_all_reduce_sums_every_element_and_every_rank_holds_the_same_bits() {
    // Integers sum exactly whatever the order; thirds round, which shows every rank got the
    // same rounding. Lengths below, at and above the world size leave some ring chunks empty.
    let value = |rank: usize, i: usize, whole: bool| {
        let k = ((rank * 7919 + i * 104_729) % 1000) as f32 - 500.0;
        if whole { k } else { k / 3.0 }
    };
    for world in [2, 3, 4] {
        let master = free_address();
        let lengths = [0, 2, world, 7, 100_003];
        let sums: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..world)
                .map(|rank| {
                    let master = &master;
                    s.spawn(move || {
                        let group = group(rank, world, master);
                        let mut out = Vec::new();
                        for n in lengths {
                            for whole in [true, false] {
                                let mut values: Vec<f32> = (0..n).map(|i| value(rank, i, whole)).collect();
                                group.all_reduce_sum(&mut values).unwrap();
                                out.push(values);
                            }
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (case, (n, whole)) in lengths.iter().flat_map(|&n| [(n, true), (n, false)]).enumerate() {
            for i in 0..n {
                let exact: f64 = (0..world).map(|r| value(r, i, whole) as f64).sum();
                let got = sums[0][case][i];
                if whole {
                    assert_eq!(got as f64, exact, "world {world}, n {n}, element {i}");
                } else {
                    assert!((got as f64 - exact).abs() <= 1e-4, "world {world}, n {n}, element {i}: {got} vs {exact}");
                }
            }
            for rank in 1..world {
                assert_eq!(sums[rank][case], sums[0][case], "world {world}, n {n}: rank {rank} differs from rank 0");
            }
        }
    }
}

fn cold_start(config: &Path, run: &Path, world: usize, rank: usize, master: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lrem-train"))
        .args(["--threads", "1", "cold-start", "--config"])
        .arg(config)
        .arg("--run-dir")
        .arg(run)
        .args(["--world-size", &world.to_string(), "--rank", &rank.to_string(), "--master", master])
        .args(extra)
        .env_remove("WORLD_SIZE")
        .env_remove("RANK")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `world` ranks to the end and returns rank 0's exported parameters.
fn train(config: &Path, run: &Path, world: usize, extra: &[&str]) -> Option<Vec<Vec<f32>>> {
    let master = free_address();
    let children: Vec<Child> = (0..world).map(|r| cold_start(config, run, world, r, &master, extra)).collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rank {rank} of {world} failed: {log}");
    }
    let model = run.join("model");
    model.exists().then(|| {
        let lm = LanguageModel::<CpuAutodiff>::load(&model, &Default::default()).unwrap();
        let mut v = Values { grads: None, out: Vec::new() };
        lm.model.visit(&mut v);
        v.out
    })
}

fn max_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn metrics_steps(run: &Path) -> Vec<usize> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn two_processes_train_the_parameters_of_one_process_on_the_same_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: TrainConfig = toy_config(dir.path());
    config.optim.epochs = 2;
    config.optim.lr = 1e-4;
    config.checkpoint.every_steps = 1;
    let path: PathBuf = dir.path().join("train.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();

    let one = train(&path, &dir.path().join("one"), 1, &[]).unwrap();
    let two = train(&path, &dir.path().join("two"), 2, &[]).unwrap();
    let gap = max_gap(&one, &two);
    let moved = max_gap(&one, &train_nothing(&config));
    assert!(moved > 100.0 * gap, "training moved the parameters by {moved} only");
    eprintln!("2 ranks vs 1 process: largest parameter gap {gap:e}, training moved them up to {moved:e}");
    assert!(gap <= 1e-5, "2 ranks end {gap} away from 1 process");
    // Rank 0 alone wrote the metrics: one line a step.
    let steps = metrics_steps(&dir.path().join("one"));
    assert!(steps.len() > 4);
    assert_eq!(metrics_steps(&dir.path().join("two")), steps);

    // Stopped after 3 steps on 2 ranks, resumed on 1 (and the other way round).
    let switched = dir.path().join("switched");
    assert!(train(&path, &switched, 2, &["--stop-after", "3"]).is_none());
    let resumed = train(&path, &switched, 1, &["--resume"]).unwrap();
    let gap = max_gap(&one, &resumed);
    assert!(gap <= 1e-5, "2 ranks then 1 end {gap} away from 1 process");
    let back = dir.path().join("back");
    assert!(train(&path, &back, 1, &["--stop-after", "2"]).is_none());
    let resumed = train(&path, &back, 2, &["--resume"]).unwrap();
    let gap = max_gap(&one, &resumed);
    assert!(gap <= 1e-5, "1 process then 2 ranks end {gap} away from 1 process");
    assert_eq!(metrics_steps(&back), steps);
}

/// The parameters training starts from (the base model with the LREM tokens).
fn train_nothing(config: &TrainConfig) -> Vec<Vec<f32>> {
    let lm = LanguageModel::<CpuAutodiff>::load(&config.model.path, &Default::default()).unwrap().add_lrem_tokens();
    let mut v = Values { grads: None, out: Vec::new() };
    lm.model.visit(&mut v);
    v.out
}

#[test]
fn a_rank_with_another_configuration_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config: TrainConfig = toy_config(dir.path());
    let path = dir.path().join("train.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    // Another learning rate: the same batches, a different training.
    let mut other = config.clone();
    other.optim.lr *= 2.0;
    let other_path = dir.path().join("other.toml");
    std::fs::write(&other_path, toml::to_string(&other).unwrap()).unwrap();
    let master = free_address();
    let run = dir.path().join("run");
    let zero = cold_start(&path, &run, 2, 0, &master, &[]);
    let one = cold_start(&other_path, &run, 2, 1, &master, &[]);
    for child in [zero, one] {
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(log.contains("differs between rank 0 and rank(s) [1]"), "{log}");
    }
    assert!(!run.join("checkpoints").exists() && !run.join("metrics.jsonl").exists());
}

#[test]
fn a_ctrl_c_on_one_rank_stops_both_after_the_same_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: TrainConfig = toy_config(dir.path());
    config.optim.epochs = 10_000;
    config.checkpoint.every_steps = 1_000_000;
    let path = dir.path().join("train.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let (run, master) = (dir.path().join("run"), free_address());
    let ranks: Vec<Child> = (0..2).map(|r| cold_start(&path, &run, 2, r, &master, &[])).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |m| m.lines().count()) < 2 {
        assert!(std::time::Instant::now() < deadline, "no training step within 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The interrupt reaches rank 1 only; rank 0 learns of it with the next step's gradients.
    let kill = Command::new("kill").args(["-INT", &ranks[1].id().to_string()]).status().unwrap();
    assert!(kill.success());
    for (rank, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "rank {rank}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let steps = metrics_steps(&run).len();
    let saved = lrem_trainer::train::checkpoint::list(&run).unwrap();
    assert!(saved.last().unwrap().ends_with(format!("step-{steps:06}")), "{saved:?} after {steps} steps");
}
