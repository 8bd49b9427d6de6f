//! GRPO's objective on a toy policy: its gradient, clipping and the KL term.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use lrem_trainer::backend::{Cpu, CpuAutodiff};
use lrem_trainer::model::layers::host;
use lrem_trainer::rl::objective::*;

type A = CpuAutodiff;

/// A toy policy: free logits `[samples, t, vocab]`; sample i chose `ids[i][j]` at step j.
struct Toy {
    logits: Tensor<A, 3>,
    ids: Vec<Vec<i64>>,
}

impl Toy {
    fn new(samples: usize, t: usize, vocab: usize, ids: Vec<Vec<i64>>) -> Self {
        let values: Vec<f32> = (0..samples * t * vocab).map(|k| ((k * 37 % 11) as f32 - 5.0) / 4.0).collect();
        let logits = Tensor::<A, 3>::from_data(TensorData::new(values, [samples, t, vocab]), &Default::default());
        Self { logits: logits.require_grad(), ids }
    }

    fn logp(&self) -> Tensor<A, 2> {
        let [s, t, _] = self.logits.dims();
        let padded: Vec<i64> =
            self.ids.iter().flat_map(|row| (0..t).map(|j| row.get(j).copied().unwrap_or(0))).collect();
        let ids = Tensor::<A, 3, Int>::from_data(TensorData::new(padded, [s, t, 1]), &Default::default());
        log_softmax(self.logits.clone(), 2).gather(2, ids).reshape([s, t])
    }

    fn rows(&self, shift: f32) -> Vec<Vec<f32>> {
        let t = self.logits.dims()[1];
        let all = host(self.logp().detach());
        self.ids.iter().enumerate().map(|(i, row)| (0..row.len()).map(|j| all[i * t + j] + shift).collect()).collect()
    }

    fn grad(&self, loss: Tensor<A, 1>) -> Vec<f32> {
        let grads = loss.backward();
        let g: Tensor<Cpu, 3> = self.logits.grad(&grads).expect("the logits take part in the loss");
        host(g)
    }
}

fn toy() -> Toy {
    Toy::new(3, 4, 5, vec![vec![1, 2, 3, 4], vec![0, 2], vec![4, 4, 1]])
}

#[test]
fn on_policy_the_gradient_is_the_plain_policy_gradient() {
    let advantages = [1.0, -0.5, 0.25];
    for level in [Level::Sequence, Level::Token] {
        let policy = toy();
        let old = policy.rows(0.0);
        let lens: Vec<usize> = policy.ids.iter().map(Vec::len).collect();
        let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
        let config = ObjectiveConfig { level, ..Default::default() };
        let out = clipped(policy.logp(), &batch, None, &config);
        assert_eq!(out.clip_fraction, 0.0);
        let got = policy.grad(out.loss);
        // −Σ A_i log π(o_i,t) over the tokens, divided by the token count (token mean).
        let t = 4;
        let weights: Vec<f32> = (0..3)
            .flat_map(|i| {
                let (n, a) = (lens[i], advantages[i] as f32);
                (0..t).map(move |j| if j < n { -a / 9.0 } else { 0.0 })
            })
            .collect();
        let weights = Tensor::<A, 2>::from_data(TensorData::new(weights, [3, t]), &Default::default());
        let want = policy.grad((policy.logp() * weights).sum());
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{level:?}: {g} vs {w}");
        }
    }
}

#[test]
fn a_positive_advantage_raises_the_sample_and_clipping_stops_it() {
    let t = 4;
    let chosen = |g: &[f32], i: usize, j: usize, id: usize| g[(i * t + j) * 5 + id];
    // ρ = e^0.5 ≈ 1.65 on every token: above 1 + ε.
    let policy = toy();
    let old = policy.rows(-0.5);
    let lens: Vec<usize> = policy.ids.iter().map(Vec::len).collect();
    let advantages = [1.0, -1.0, 0.0];
    let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
    let out = clipped(policy.logp(), &batch, None, &ObjectiveConfig::default());
    // Sample 0 (A > 0, ρ above the range) is clipped: no gradient; sample 1 (A < 0) is not.
    assert!((out.clip_fraction - 1.0 / 3.0).abs() < 1e-9, "{}", out.clip_fraction);
    let g = policy.grad(out.loss);
    assert!(g[..t * 5].iter().all(|v| *v == 0.0), "{:?}", &g[..t * 5]);
    // Descent on sample 1 lowers its chosen tokens' logits: a positive gradient.
    assert!(chosen(&g, 1, 0, 0) > 0.0 && chosen(&g, 1, 1, 2) > 0.0);

    // Inside the range (ρ = 1), A > 0: descent raises the chosen logits.
    let policy = toy();
    let old = policy.rows(0.0);
    let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
    let g = policy.grad(clipped(policy.logp(), &batch, None, &ObjectiveConfig::default()).loss);
    assert!(chosen(&g, 0, 0, 1) < 0.0 && chosen(&g, 0, 3, 4) < 0.0);
}

#[test]
fn kl_to_an_identical_reference_is_zero_and_grows_with_the_gap() {
    let policy = toy();
    let old = policy.rows(0.0);
    let lens: Vec<usize> = policy.ids.iter().map(Vec::len).collect();
    let advantages = [0.0; 3];
    let batch = Completions { lens: &lens, old_logp: &old, advantages: &advantages };
    let config = ObjectiveConfig::default();
    let same = clipped(policy.logp(), &batch, Some((&old, 0.1)), &config);
    assert!(same.kl.unwrap().abs() < 1e-6);
    let far = policy.rows(-1.0);
    let apart = clipped(policy.logp(), &batch, Some((&far, 0.1)), &config);
    // k3 at d = −1: e^−1 + 1 − 1.
    assert!((apart.kl.unwrap() - (-1f64).exp()).abs() < 1e-5, "{:?}", apart.kl);
    assert!((host(apart.loss)[0] as f64 - 0.1 * (-1f64).exp()).abs() < 1e-5);
}
