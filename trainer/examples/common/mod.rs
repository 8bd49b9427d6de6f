//! What the training-step benches share: the named decoder shapes, fast random weights, their
//! parameter counts, the peak resident set.

use anyhow::{Result, bail};
use lrem_trainer::model::decoder::DecoderConfig;
use lrem_trainer::model::weights::{HostTensor, WeightSource};

/// Uniform values in ±scale from a xorshift generator: fast enough for billions of weights.
pub struct FastRandom {
    pub state: u64,
    pub scale: f32,
}

impl WeightSource for FastRandom {
    fn origin(&self) -> String {
        "random".into()
    }
    fn contains(&self, _: &str) -> bool {
        true
    }
    fn read(&mut self, name: &str) -> lrem_trainer::Result<HostTensor> {
        lrem_trainer::bail!("no shape for {name}")
    }
    fn expect(&mut self, name: &str, shape: &[usize]) -> lrem_trainer::Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let centre = if name.contains("norm") { 1.0 } else { 0.0 };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let unit = (self.state >> 40) as f32 / (1u64 << 24) as f32;
            out.push(centre + self.scale * (2.0 * unit - 1.0));
        }
        Ok(out)
    }
}

pub fn shape(name: &str) -> Result<DecoderConfig> {
    let mut c = DecoderConfig::tiny(49_155);
    match name {
        // SmolLM2-135M (llama): the model `make train` trains.
        "smollm2-135m" => {
            (c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) =
                (576, 1536, 30, 9, 3, 64);
            (c.qkv_bias, c.rope_theta, c.max_position) = (false, 100_000.0, 8192);
        }
        // Qwen2.5-3B (qwen2): the shape the issue asks to time on a GPU.
        "qwen2.5-3b" => {
            c.architecture = "qwen2".into();
            c.vocab_size = 151_936;
            (c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) =
                (2048, 11008, 36, 16, 2, 128);
            (c.qkv_bias, c.rope_theta, c.max_position, c.rms_norm_eps) = (true, 1_000_000.0, 32_768, 1e-6);
        }
        "tiny" => {}
        other => bail!("unknown shape `{other}` (smollm2-135m, qwen2.5-3b, tiny)"),
    }
    Ok(c)
}

/// Parameters of the blocks and final norm, and of the LM head (the embedding when tied).
pub fn parameters(c: &DecoderConfig) -> (f64, f64) {
    let (h, i, l) = (c.hidden_size as f64, c.intermediate_size as f64, c.num_layers as f64);
    let q = (c.num_heads * c.head_dim) as f64;
    let kv = (c.num_kv_heads * c.head_dim) as f64;
    let attn = h * q + 2.0 * h * kv + q * h + if c.qkv_bias { q + 2.0 * kv } else { 0.0 };
    let per_layer = attn + 3.0 * h * i + 2.0 * h;
    (l * per_layer + h, h * c.vocab_size as f64)
}

/// The process's peak resident set (VmHWM), in MiB; 0 where /proc is absent.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `$run::<B>($args, &device)` on the autodiff backend named `$name`: `cpu`, and with the `cuda`
/// feature `cuda-f32` and `cuda-bf16`.
macro_rules! on_backend {
    ($name:expr, $run:ident, $args:expr) => {
        match $name {
            "cpu" => $run::<lrem_trainer::backend::CpuAutodiff>($args, &Default::default()),
            #[cfg(feature = "cuda")]
            "cuda-f32" => $run::<burn::backend::Autodiff<burn::backend::Cuda<f32, i32>>>($args, &Default::default()),
            #[cfg(feature = "cuda")]
            "cuda-bf16" => {
                $run::<burn::backend::Autodiff<burn::backend::Cuda<half::bf16, i32>>>($args, &Default::default())
            }
            other => {
                anyhow::bail!("backend `{other}` is not built in (cpu; cuda-f32 and cuda-bf16 with --features cuda)")
            }
        }
    };
}
pub(crate) use on_backend;
