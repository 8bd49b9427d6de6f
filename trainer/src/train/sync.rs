//! The gradients of a step summed over the ranks of a data-parallel run, as one buffer: per
//! parameter (in the module's visiting order, the same in every rank) a flag saying whether this
//! rank has its gradient, then the gradient or zeros. A parameter no rank has a gradient for
//! stays without one, so AdamW skips it as a single process would.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::dist::ProcessGroup;
use crate::error::Result;
use crate::model::layers::{host, tensor};

struct Flatten<'g> {
    grads: &'g mut GradientsParams,
    out: Vec<f32>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        match self.grads.remove::<B::InnerBackend, D>(param.id) {
            Some(g) => {
                self.out.push(1.0);
                self.out.extend(host(g));
            }
            None => {
                self.out.push(0.0);
                let numel = param.lazy_shape().num_elements();
                self.out.resize(self.out.len() + numel, 0.0);
            }
        }
    }
}

struct Unflatten<'b> {
    values: &'b [f32],
    at: usize,
    grads: GradientsParams,
    /// Σ g² over the gradients registered.
    squares: f64,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let shape: [usize; D] = param.lazy_shape().dims();
        let numel: usize = shape.iter().product();
        let (present, values) = (self.values[self.at], &self.values[self.at + 1..self.at + 1 + numel]);
        self.at += 1 + numel;
        if present > 0.0 {
            self.squares += values.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>();
            let device = param.lazy_device();
            self.grads.register(param.id, tensor::<B::InnerBackend, D>(values.to_vec(), shape, &device));
        }
    }
}

/// Sums `grads` and `extra` (step statistics that add across ranks) over the group; every rank
/// gets the same sums back, with their global L2 norm. A single process returns `grads` as they
/// are and no norm.
///
/// The norm is taken here, on the host and in f64, from the very values every rank holds: a norm
/// each rank computed on its GPU could differ in its last bits between ranks (autotuned sums
/// may add in any order), and so would the clipping factor, and the parameters would drift apart.
pub fn all_reduce_gradients<B: AutodiffBackend, M: Module<B>>(
    group: &ProcessGroup,
    model: &M,
    mut grads: GradientsParams,
    extra: &mut [f32],
) -> Result<(GradientsParams, Option<f64>)> {
    if group.world() == 1 {
        return Ok((grads, None));
    }
    let mut flat = Flatten { grads: &mut grads, out: Vec::new() };
    model.visit(&mut flat);
    let mut values = flat.out;
    let params_len = values.len();
    values.extend_from_slice(extra);
    group.all_reduce_sum(&mut values)?;
    extra.copy_from_slice(&values[params_len..]);
    let mut unflatten = Unflatten { values: &values[..params_len], at: 0, grads: GradientsParams::new(), squares: 0.0 };
    model.visit(&mut unflatten);
    Ok((unflatten.grads, Some(unflatten.squares.sqrt())))
}
