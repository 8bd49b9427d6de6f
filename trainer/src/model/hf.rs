//! Hugging Face model folders: `config.json` and one or several safetensors files
//! (`model.safetensors`, or shards listed by `model.safetensors.index.json`), bf16/f16/f32 read
//! as f32.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::decoder::DecoderConfig;
use super::weights::{HostTensor, WeightSource};
use crate::error::{Context, Result};
use crate::{bail, err};

pub struct SafetensorsFolder {
    dir: PathBuf,
    /// Tensor name → index into `files`.
    index: BTreeMap<String, usize>,
    files: Vec<(PathBuf, Mmap)>,
    /// Prefixes tried when a name is missing (`bert.` for BERT checkpoints saved from a head model).
    prefixes: Vec<String>,
}

impl SafetensorsFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let shard_names: Vec<String> = if index_path.exists() {
            let index: Value = serde_json::from_str(&std::fs::read_to_string(&index_path)?)
                .with_context(|| index_path.display().to_string())?;
            let map = index["weight_map"]
                .as_object()
                .ok_or_else(|| err!("{}: no `weight_map` object", index_path.display()))?;
            let mut names: Vec<String> = map.values().filter_map(Value::as_str).map(str::to_string).collect();
            names.sort();
            names.dedup();
            names
        } else if dir.join("model.safetensors").exists() {
            vec!["model.safetensors".into()]
        } else {
            bail!("{}: neither model.safetensors nor model.safetensors.index.json", dir.display());
        };
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for (i, name) in shard_names.iter().enumerate() {
            let path = dir.join(name);
            let file = File::open(&path).with_context(|| format!("{}: cannot open the shard", path.display()))?;
            // SAFETY: the file is opened read-only and only read while this struct lives.
            let mmap = unsafe { Mmap::map(&file) }.with_context(|| path.display().to_string())?;
            let st = SafeTensors::deserialize(&mmap).map_err(|e| err!("{}: {e}", path.display()))?;
            for tensor_name in st.names() {
                index.insert(tensor_name.to_string(), i);
            }
            files.push((path, mmap));
        }
        Ok(Self { dir: dir.to_path_buf(), index, files, prefixes: vec![String::new(), "bert.".into()] })
    }

    fn resolve(&self, name: &str) -> Option<(String, usize)> {
        self.prefixes.iter().map(|p| format!("{p}{name}")).find_map(|n| self.index.get(&n).map(|&i| (n, i)))
    }
}

impl WeightSource for SafetensorsFolder {
    fn origin(&self) -> String {
        self.dir.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }

    fn read(&mut self, name: &str) -> Result<HostTensor> {
        let (full, i) = self.resolve(name).ok_or_else(|| err!("{}: tensor `{name}` is missing", self.origin()))?;
        let (path, mmap) = &self.files[i];
        let st = SafeTensors::deserialize(mmap).map_err(|e| err!("{}: {e}", path.display()))?;
        let view = st.tensor(&full).map_err(|e| err!("{}: `{full}`: {e}", path.display()))?;
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => bail!("{}: tensor `{full}` has dtype {other:?}; supported: F32, F16, BF16", path.display()),
        };
        Ok(HostTensor { values, shape: view.shape().to_vec() })
    }
}

/// A decoder's shape from an HF `config.json` (`model_type` llama or qwen2).
pub fn decoder_config(dir: &Path) -> Result<DecoderConfig> {
    let path = dir.join("config.json");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.display().to_string())?)
        .with_context(|| path.display().to_string())?;
    let field =
        |key: &str| c[key].as_u64().map(|v| v as usize).ok_or_else(|| err!("{}: `{key}` is missing", path.display()));
    let arch = c["model_type"].as_str().unwrap_or_default().to_string();
    let hidden = field("hidden_size")?;
    let heads = field("num_attention_heads")?;
    let config = DecoderConfig {
        qkv_bias: c["attention_bias"].as_bool().unwrap_or(arch == "qwen2"),
        architecture: arch,
        vocab_size: field("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: field("intermediate_size")?,
        num_layers: field("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: field("num_key_value_heads").unwrap_or(heads),
        head_dim: field("head_dim").unwrap_or(hidden / heads),
        rms_norm_eps: c["rms_norm_eps"].as_f64().unwrap_or(1e-6),
        rope_theta: c["rope_theta"].as_f64().unwrap_or(10_000.0),
        max_position: field("max_position_embeddings").unwrap_or(4096),
        tie_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false),
    };
    config.validate().with_context(|| path.display().to_string())?;
    Ok(config)
}
