//! The learning-rate schedule and global gradient-norm clipping.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

use super::config::OptimConfig;

/// AdamW with the configured (PyTorch-default) hyper-parameters; no per-tensor clipping.
pub fn adamw(config: &OptimConfig) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(config.beta1)
        .with_beta_2(config.beta2)
        .with_epsilon(config.eps)
        .with_weight_decay(config.weight_decay)
}

/// Warmup steps as transformers computes them: `ceil(ratio · total)`.
pub fn warmup_steps(total: usize, ratio: f64) -> usize {
    (ratio * total as f64).ceil() as usize
}

/// transformers' `get_cosine_schedule_with_warmup` at optimizer step `step` (0-based): linear
/// from 0 over the warmup, then a half cosine down to 0 at `total`.
pub fn lr_at(step: usize, total: usize, warmup: usize, base: f64) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    base * (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
}

struct SquaredNorm<'g, B: AutodiffBackend> {
    grads: &'g GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

struct Scale<'g> {
    grads: &'g mut GradientsParams,
    factor: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The L2 norm of all gradients together.
pub fn global_norm<B: AutodiffBackend, M: Module<B>>(model: &M, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut visitor);
    visitor.total.map_or(0.0, |t| t.into_scalar().elem::<f64>().sqrt())
}

/// Scales every gradient by `max_norm / norm` when the global norm exceeds `max_norm` (PyTorch's
/// `clip_grad_norm_`, which divides by `norm + 1e-6`). Returns the norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = global_norm::<B, M>(model, grads);
    clip_to_norm::<B, M>(model, grads, norm, max_norm);
    norm
}

/// [`clip_global_norm`] with the norm already known (data parallel: taken once from the summed
/// gradients, the same on every rank).
pub fn clip_to_norm<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &mut GradientsParams,
    norm: f64,
    max_norm: f64,
) {
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        let mut visitor = Scale { grads, factor: max_norm / (norm + 1e-6) };
        Module::<B>::visit(model, &mut visitor);
    }
}
