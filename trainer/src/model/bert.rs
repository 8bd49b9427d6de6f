//! The BERT encoder behind sentence-transformers models such as all-MiniLM-L6-v2: token,
//! position and type embeddings, post-norm self-attention blocks with exact GELU, then the
//! pooling `1_Pooling/config.json` names and the L2 normalisation `modules.json` lists.

use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde_json::Value;

use super::hf::SafetensorsFolder;
use super::layers::{LayerNorm, Linear, host, tensor, transpose_host};
use super::tokenizer::TextTokenizer;
use super::weights::WeightSource;
use crate::error::{Context, Result};
use crate::{bail, err};

#[derive(Debug, Clone)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub max_position: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    Mean,
    Cls,
}

#[derive(Module, Debug)]
pub struct BertLayer<B: Backend> {
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    attn_out: Linear<B>,
    attn_norm: LayerNorm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    out_norm: LayerNorm<B>,
    num_heads: usize,
}

#[derive(Module, Debug)]
pub struct Bert<B: Backend> {
    word: Param<Tensor<B, 2>>,
    position: Param<Tensor<B, 2>>,
    token_type: Param<Tensor<B, 2>>,
    embed_norm: LayerNorm<B>,
    layers: Vec<BertLayer<B>>,
}

/// A sentence encoder: the BERT weights, its tokenizer and the sentence-transformers settings.
pub struct SentenceEncoder<B: Backend> {
    pub model: Bert<B>,
    pub tokenizer: TextTokenizer,
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_seq_length: usize,
    pub dim: usize,
}

impl<B: Backend> BertLayer<B> {
    fn forward(&self, x: Tensor<B, 3>, mask: &Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, t, h] = x.dims();
        let nh = self.num_heads;
        let hd = h / nh;
        let heads = |y: Tensor<B, 3>| y.reshape([b, t, nh, hd]).swap_dims(1, 2);
        let q = heads(self.query.forward(x.clone()));
        let k = heads(self.key.forward(x.clone()));
        let v = heads(self.value.forward(x.clone()));
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt()) + mask.clone();
        let ctx = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, t, h]);
        let x = self.attn_norm.forward(self.attn_out.forward(ctx) + x);
        let y = self.output.forward(gelu_erf(self.intermediate.forward(x.clone())));
        self.out_norm.forward(y + x)
    }
}

impl<B: Backend> Bert<B> {
    /// Last hidden states `[batch, t, hidden]` for left-aligned, right-padded `ids`.
    pub fn forward(&self, ids: &[Vec<u32>], lengths: &[usize]) -> Tensor<B, 3> {
        let device = self.word.device();
        let b = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        let h = self.word.dims()[1];
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i as i64).collect();
        let ids_t = Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [b * t]), &device);
        let pos: Vec<i64> = (0..b).flat_map(|_| 0..t as i64).collect();
        let pos_t = Tensor::<B, 1, Int>::from_data(TensorData::new(pos, [b * t]), &device);
        let types = Tensor::<B, 1, Int>::zeros([b * t], &device);
        let x = self.word.val().select(0, ids_t)
            + self.position.val().select(0, pos_t)
            + self.token_type.val().select(0, types);
        let mut x = self.embed_norm.forward(x.reshape([b, t, h]));
        let mut mask = vec![0.0f32; b * t];
        for (row, &len) in lengths.iter().enumerate() {
            for m in &mut mask[row * t + len..(row + 1) * t] {
                *m = -1e30;
            }
        }
        let mask = tensor::<B, 4>(mask, [b, 1, 1, t], &device);
        for layer in &self.layers {
            x = layer.forward(x, &mask);
        }
        x
    }

    pub fn load(config: &BertConfig, source: &mut dyn WeightSource, device: &B::Device) -> Result<Self> {
        let h = config.hidden_size;
        let linear = |s: &mut dyn WeightSource, name: &str, d_in: usize, d_out: usize| -> Result<Linear<B>> {
            let w = s.expect(&format!("{name}.weight"), &[d_out, d_in])?;
            let bias = s.expect(&format!("{name}.bias"), &[d_out])?;
            Ok(Linear::new(
                tensor(transpose_host(&w, d_out, d_in), [d_in, d_out], device),
                Some(tensor(bias, [d_out], device)),
            ))
        };
        let norm = |s: &mut dyn WeightSource, name: &str| -> Result<LayerNorm<B>> {
            Ok(LayerNorm {
                weight: Param::from_tensor(tensor(s.expect(&format!("{name}.weight"), &[h])?, [h], device)),
                bias: Param::from_tensor(tensor(s.expect(&format!("{name}.bias"), &[h])?, [h], device)),
                eps: config.layer_norm_eps,
            })
        };
        let matrix = |s: &mut dyn WeightSource, name: &str, rows: usize| -> Result<Param<Tensor<B, 2>>> {
            Ok(Param::from_tensor(tensor(s.expect(name, &[rows, h])?, [rows, h], device)))
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(BertLayer {
                query: linear(source, &format!("{p}.attention.self.query"), h, h)?,
                key: linear(source, &format!("{p}.attention.self.key"), h, h)?,
                value: linear(source, &format!("{p}.attention.self.value"), h, h)?,
                attn_out: linear(source, &format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: norm(source, &format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(source, &format!("{p}.intermediate.dense"), h, config.intermediate_size)?,
                output: linear(source, &format!("{p}.output.dense"), config.intermediate_size, h)?,
                out_norm: norm(source, &format!("{p}.output.LayerNorm"))?,
                num_heads: config.num_heads,
            });
        }
        Ok(Self {
            word: matrix(source, "embeddings.word_embeddings.weight", config.vocab_size)?,
            position: matrix(source, "embeddings.position_embeddings.weight", config.max_position)?,
            token_type: matrix(source, "embeddings.token_type_embeddings.weight", config.type_vocab_size)?,
            embed_norm: norm(source, "embeddings.LayerNorm")?,
            layers,
        })
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| path.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

impl<B: Backend> SentenceEncoder<B> {
    /// A sentence-transformers folder (`config.json`, `model.safetensors`, `tokenizer.json`,
    /// optionally `modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        let c = read_json(&config_path)?.ok_or_else(|| err!("{}: no such file", config_path.display()))?;
        if c["model_type"].as_str() != Some("bert") {
            bail!(
                "{}: model_type {} is not supported by the encoder (supported: bert)",
                config_path.display(),
                c["model_type"]
            );
        }
        let field = |k: &str| {
            c[k].as_u64().map(|v| v as usize).ok_or_else(|| err!("{}: `{k}` is missing", config_path.display()))
        };
        let config = BertConfig {
            vocab_size: field("vocab_size")?,
            hidden_size: field("hidden_size")?,
            intermediate_size: field("intermediate_size")?,
            num_layers: field("num_hidden_layers")?,
            num_heads: field("num_attention_heads")?,
            max_position: field("max_position_embeddings")?,
            type_vocab_size: field("type_vocab_size").unwrap_or(2),
            layer_norm_eps: c["layer_norm_eps"].as_f64().unwrap_or(1e-12),
        };
        let model = Bert::load(&config, &mut SafetensorsFolder::open(dir)?, device)?;
        let mut tokenizer = TextTokenizer::from_hf_dir(dir)?;
        let max_seq_length = read_json(&dir.join("sentence_bert_config.json"))?
            .and_then(|v| v["max_seq_length"].as_u64())
            .map_or(config.max_position, |v| v as usize);
        // sentence-transformers pads to the longest in the batch and truncates at max_seq_length,
        // whatever tokenizer.json says.
        tokenizer.inner.with_padding(None);
        tokenizer
            .inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| err!("{e}"))?;
        let pooling = match read_json(&dir.join("1_Pooling/config.json"))? {
            Some(p) if p["pooling_mode_cls_token"].as_bool() == Some(true) => Pooling::Cls,
            Some(p) if p["pooling_mode_mean_tokens"].as_bool() == Some(false) => {
                bail!("{}: only mean and CLS pooling are supported", dir.join("1_Pooling/config.json").display())
            }
            _ => Pooling::Mean,
        };
        let normalize = read_json(&dir.join("modules.json"))?.is_some_and(|m| {
            m.as_array().is_some_and(|a| a.iter().any(|x| x["type"].as_str().is_some_and(|t| t.ends_with("Normalize"))))
        });
        Ok(Self { model, tokenizer, pooling, normalize, max_seq_length, dim: config.hidden_size })
    }

    /// One vector per text.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut ids = Vec::with_capacity(texts.len());
        for text in texts {
            ids.push(self.tokenizer.encode(text, true)?);
        }
        Ok(self.embed_ids(ids))
    }

    /// One vector per tokenized text, in batches of texts of similar length (less padding).
    pub fn embed_sorted(&self, ids: Vec<Vec<u32>>, batch: usize) -> Vec<Vec<f32>> {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(batch.max(1)) {
            let vectors = self.embed_ids(chunk.iter().map(|&i| ids[i].clone()).collect());
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        out
    }

    /// One vector per tokenized text, as one padded batch.
    pub fn embed_ids(&self, mut ids: Vec<Vec<u32>>) -> Vec<Vec<f32>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let t = lengths.iter().copied().max().unwrap_or(0);
        for row in &mut ids {
            row.resize(t, 0);
        }
        let hidden = host(self.model.forward(&ids, &lengths));
        let h = self.dim;
        let mut out = Vec::with_capacity(ids.len());
        for (row, &len) in lengths.iter().enumerate() {
            let tokens = &hidden[row * t * h..(row * t + len) * h];
            let mut v = vec![0.0f32; h];
            match self.pooling {
                Pooling::Cls => v.copy_from_slice(&tokens[..h]),
                Pooling::Mean => {
                    for tok in tokens.chunks_exact(h) {
                        v.iter_mut().zip(tok).for_each(|(a, b)| *a += b);
                    }
                    v.iter_mut().for_each(|a| *a /= len.max(1) as f32);
                }
            }
            if self.normalize {
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
            }
            out.push(v);
        }
        out
    }
}

/// BERT's `hidden_act = "gelu"`: the exact `x · Φ(x)` through erf, as transformers computes it.
/// (burn-candle's `gelu` is candle's tanh approximation, one libm `tanhf` per element.)
fn gelu_erf<B: Backend>(x: Tensor<B, 3>) -> Tensor<B, 3> {
    x.clone().mul(x.mul_scalar(std::f64::consts::FRAC_1_SQRT_2).erf().add_scalar(1.0)).mul_scalar(0.5)
}
