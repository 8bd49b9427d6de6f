//! Where weights come from: an HF folder of safetensors or a GGUF file, both read as f32 host
//! tensors under Hugging Face names, so each model is built from one list of names.

use crate::bail;
use crate::error::Result;

/// A tensor read from disk, always dequantised or converted to f32.
pub struct HostTensor {
    pub values: Vec<f32>,
    pub shape: Vec<usize>,
}

/// A store of named tensors (HF names, e.g. `model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource {
    /// Where the tensors come from, for error messages.
    fn origin(&self) -> String;
    fn contains(&self, name: &str) -> bool;
    fn read(&mut self, name: &str) -> Result<HostTensor>;

    /// Reads `name` and checks its shape, naming the tensor and the file when they differ.
    fn expect(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        if !self.contains(name) {
            bail!("{}: tensor `{name}` is missing", self.origin());
        }
        let t = self.read(name)?;
        if t.shape != shape {
            bail!("{}: tensor `{name}` has shape {:?}, the config implies {:?}", self.origin(), t.shape, shape);
        }
        Ok(t.values)
    }
}

/// Seeded random weights of whatever shape is asked for (norm scales near 1, the rest small),
/// for tests and tiny configs.
pub struct RandomWeights {
    rng: rand_chacha::ChaCha8Rng,
    pub scale: f32,
}

impl RandomWeights {
    pub fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Self { rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed), scale: 0.2 }
    }
}

impl WeightSource for RandomWeights {
    fn origin(&self) -> String {
        "random weights".into()
    }

    fn contains(&self, _name: &str) -> bool {
        true
    }

    fn read(&mut self, name: &str) -> Result<HostTensor> {
        bail!("random weights have no shape for `{name}`; use expect")
    }

    fn expect(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        use rand::Rng;
        let n = shape.iter().product();
        let centre = if name.contains("norm") { 1.0 } else { 0.0 };
        Ok((0..n).map(|_| centre + self.scale * (self.rng.random::<f32>() * 2.0 - 1.0)).collect())
    }
}
