//! GGUF files (llama.cpp's format): the decoder config from metadata, tensors dequantised to f32
//! by candle-core's reader, and Hugging Face names for them. llama.cpp's converter permutes the
//! rows of `q_proj`/`k_proj` for the `llama` architecture (interleaved RoPE pairs); reading undoes
//! that so one RoPE convention serves both sources.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};

use super::decoder::DecoderConfig;
use super::quant::{QuantKind, QuantMatrix};
use super::weights::{HostTensor, WeightSource};
use crate::error::{Context, Result};
use crate::{bail, err};

/// The tensor types this loader reads: dequantised to f32 for training, and for inference kept
/// as Q4_0 / Q4_1 / Q8_0 blocks, Q4_K as Q4_1 blocks, the other quantised types requantised to
/// Q8_0 (`quant`). A `Q4_K_M` file mixes Q4_K, Q5_0 and Q6_K.
const SUPPORTED: [GgmlDType; 12] = [
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

pub struct GgufFile {
    path: PathBuf,
    file: File,
    content: Content,
    /// `llama` needs the q/k row permutation undone.
    architecture: String,
    num_heads: usize,
    num_kv_heads: usize,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).with_context(|| format!("{}: cannot open the GGUF file", path.display()))?;
        let content =
            Content::read(&mut file).map_err(|e| err!("{}: not a readable GGUF file: {e}", path.display()))?;
        let mut me = Self {
            path: path.to_path_buf(),
            file,
            content,
            architecture: String::new(),
            num_heads: 0,
            num_kv_heads: 0,
        };
        me.architecture = me.string("general.architecture")?;
        // The head counts undo the q/k row permutation of every read, config or not.
        let arch = me.architecture.clone();
        me.num_heads = me.usize(&format!("{arch}.attention.head_count")).unwrap_or(0);
        me.num_kv_heads = me.usize(&format!("{arch}.attention.head_count_kv")).unwrap_or(me.num_heads);
        Ok(me)
    }

    pub fn origin_path(&self) -> String {
        self.path.display().to_string()
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    fn value(&self, key: &str) -> Result<&Value> {
        self.content.metadata.get(key).ok_or_else(|| err!("{}: metadata key `{key}` is missing", self.path.display()))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        Ok(self.value(key)?.to_string().map_err(|e| err!("{}: `{key}`: {e}", self.path.display()))?.clone())
    }

    pub fn optional_string(&self, key: &str) -> Option<String> {
        self.content.metadata.get(key).and_then(|v| v.to_string().ok().cloned())
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.value(key)?;
        v.to_u32()
            .map(|x| x as usize)
            .or_else(|_| v.to_u64().map(|x| x as usize))
            .or_else(|_| v.to_i32().map(|x| x as usize))
            .map_err(|e| err!("{}: `{key}`: {e}", self.path.display()))
    }

    pub fn optional_u32(&self, key: &str) -> Option<u32> {
        self.content.metadata.get(key).and_then(|v| v.to_u32().ok())
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.content.metadata.get(key) {
            None => Ok(default),
            Some(v) => v.to_f32().map(f64::from).or_else(|_| v.to_f64()).map_err(|e| err!("`{key}`: {e}")),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Vec<String>> {
        let list = self.value(key)?.to_vec().map_err(|e| err!("{}: `{key}`: {e}", self.path.display()))?;
        list.iter().map(|v| v.to_string().cloned().map_err(|e| err!("`{key}`: {e}"))).collect()
    }

    pub fn ints(&self, key: &str) -> Result<Vec<i32>> {
        let list = self.value(key)?.to_vec().map_err(|e| err!("{}: `{key}`: {e}", self.path.display()))?;
        list.iter().map(|v| v.to_i32().map_err(|e| err!("`{key}`: {e}"))).collect()
    }

    /// The decoder's shape from `<arch>.*` metadata.
    pub fn decoder_config(&mut self) -> Result<DecoderConfig> {
        let arch = self.architecture.clone();
        if !matches!(arch.as_str(), "llama" | "qwen2") {
            bail!("{}: unsupported architecture `{arch}` (supported: llama, qwen2)", self.path.display());
        }
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = self.usize(&key("embedding_length"))?;
        let num_heads = self.usize(&key("attention.head_count"))?;
        let num_kv_heads = self.usize(&key("attention.head_count_kv")).unwrap_or(num_heads);
        let vocab = self.strings("tokenizer.ggml.tokens")?.len();
        let config = DecoderConfig {
            architecture: arch.clone(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.usize(&key("feed_forward_length"))?,
            num_layers: self.usize(&key("block_count"))?,
            num_heads,
            num_kv_heads,
            head_dim: self.usize(&key("rope.dimension_count")).unwrap_or(hidden / num_heads),
            rms_norm_eps: self.f64_or(&key("attention.layer_norm_rms_epsilon"), 1e-6)?,
            rope_theta: self.f64_or(&key("rope.freq_base"), 10_000.0)?,
            max_position: self.usize(&key("context_length"))?,
            qkv_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            tie_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
        };
        config.validate().with_context(|| self.path.display().to_string())?;
        Ok(config)
    }

    /// The GGUF name of a Hugging Face tensor name.
    fn gguf_name(hf: &str) -> Option<String> {
        let fixed = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
        ];
        if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
            return Some(g.to_string());
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let parts = [
            ("input_layernorm.weight", "attn_norm.weight"),
            ("post_attention_layernorm.weight", "ffn_norm.weight"),
            ("self_attn.q_proj.", "attn_q."),
            ("self_attn.k_proj.", "attn_k."),
            ("self_attn.v_proj.", "attn_v."),
            ("self_attn.o_proj.", "attn_output."),
            ("mlp.gate_proj.", "ffn_gate."),
            ("mlp.up_proj.", "ffn_up."),
            ("mlp.down_proj.", "ffn_down."),
        ];
        parts.iter().find_map(|(h, g)| rest.strip_prefix(h).map(|tail| format!("blk.{layer}.{g}{tail}")))
    }
}

impl WeightSource for GgufFile {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        Self::gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }

    fn read(&mut self, name: &str) -> Result<HostTensor> {
        let gguf = Self::gguf_name(name).ok_or_else(|| err!("{}: no GGUF name for `{name}`", self.path.display()))?;
        let info = &self.content.tensor_infos[&gguf];
        if !SUPPORTED.contains(&info.ggml_dtype) {
            bail!(
                "{}: tensor `{gguf}` has quant type {:?}; supported: {SUPPORTED:?}",
                self.path.display(),
                info.ggml_dtype
            );
        }
        let q = self
            .content
            .tensor(&mut self.file, &gguf, &candle_core::Device::Cpu)
            .map_err(|e| err!("{}: reading `{gguf}`: {e}", self.path.display()))?;
        let t = q.dequantize(&candle_core::Device::Cpu).map_err(|e| err!("dequantising `{gguf}`: {e}"))?;
        let shape = t.dims().to_vec();
        let mut values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| err!("`{gguf}`: {e}"))?;
        if let Some(heads) = self.permuted_heads(name) {
            values = unpermute_rows(&values, &shape, heads);
        }
        Ok(HostTensor { values, shape })
    }
}

impl GgufFile {
    /// A tensor's blocks as stored, for the quantised matmul, or `None` when its type is not one
    /// the kernels multiply (f32/f16 tensors, K-quants): those stay on the f32 path.
    pub fn read_quantized(&mut self, name: &str) -> Result<Option<QuantMatrix>> {
        let Some(gguf) = Self::gguf_name(name).filter(|g| self.content.tensor_infos.contains_key(g)) else {
            return Ok(None);
        };
        let info = &self.content.tensor_infos[&gguf];
        let dtype = info.ggml_dtype;
        let &[rows, cols] = info.shape.dims() else { return Ok(None) };
        if matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) || !SUPPORTED.contains(&dtype) {
            return Ok(None);
        }
        let q = self
            .content
            .tensor(&mut self.file, &gguf, &candle_core::Device::Cpu)
            .map_err(|e| err!("{}: reading `{gguf}`: {e}", self.path.display()))?;
        let bytes = || q.data().map(|d| d.into_owned()).map_err(|e| err!("{}: `{gguf}`: {e}", self.path.display()));
        let matrix = match dtype {
            GgmlDType::Q4_0 => QuantMatrix::new(QuantKind::Q4_0, rows, cols, bytes()?),
            GgmlDType::Q4_1 => QuantMatrix::new(QuantKind::Q4_1, rows, cols, bytes()?),
            GgmlDType::Q8_0 => QuantMatrix::new(QuantKind::Q8_0, rows, cols, bytes()?),
            GgmlDType::Q4K => QuantMatrix::from_q4_k(rows, cols, &bytes()?),
            _ => {
                let t = q.dequantize(&candle_core::Device::Cpu).map_err(|e| err!("dequantising `{gguf}`: {e}"))?;
                let values = t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| err!("`{gguf}`: {e}"))?;
                QuantMatrix::quantize_q8(rows, cols, &values)
            }
        }
        .with_context(|| format!("{}: `{gguf}` ({dtype:?})", self.path.display()))?;
        Ok(Some(match self.permuted_heads(name) {
            Some(heads) => matrix.permute_rows(&unpermute_order(rows, heads)),
            None => matrix,
        }))
    }

    /// The head count whose row permutation `llama` files carry for this tensor, if any.
    fn permuted_heads(&self, name: &str) -> Option<usize> {
        if self.architecture != "llama" {
            None
        } else if name.contains("q_proj") {
            Some(self.num_heads)
        } else if name.contains("k_proj") {
            Some(self.num_kv_heads)
        } else {
            None
        }
    }
}

/// Undoes llama.cpp's `permute`: within each head, GGUF row `2j + k` is Hugging Face row
/// `k·(d/2) + j`.
pub fn unpermute_rows(values: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let rows = shape[0];
    let cols = values.len() / rows;
    unpermute_order(rows, heads).iter().flat_map(|&src| &values[src * cols..(src + 1) * cols]).copied().collect()
}

/// For each Hugging Face row, the GGUF row it comes from.
fn unpermute_order(rows: usize, heads: usize) -> Vec<usize> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut order = vec![0; rows];
    for h in 0..heads {
        for j in 0..half {
            for k in 0..2 {
                order[h * head_dim + k * half + j] = h * head_dim + 2 * j + k;
            }
        }
    }
    order
}
