//! The Llama / Qwen2 decoder: RMSNorm, RoPE in Hugging Face's `rotate_half` convention with a
//! position per token (left padding works), grouped-query attention, SwiGLU MLP, optional QKV
//! bias (Qwen2), tied or untied LM head.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::gguf::GgufFile;
use super::kv_cache::{KvCache, StepTensors};
use super::layers::{
    Linear, RmsNorm, fused_products, host, quantized_for, quantized_matmul, silu, tensor, transpose_host,
};
use super::precision;
use super::quant::QuantMatrix;
use super::weights::WeightSource;
use crate::bail;
use crate::error::Result;

/// The shape of a decoder, read from an HF `config.json` or GGUF metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// `llama` or `qwen2`.
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position: usize,
    pub qkv_bias: bool,
    pub tie_embeddings: bool,
}

impl DecoderConfig {
    /// A small random-weight config for tests.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            architecture: "llama".into(),
            vocab_size,
            hidden_size: 32,
            intermediate_size: 48,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position: 256,
            qkv_bias: true,
            tie_embeddings: true,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !matches!(self.architecture.as_str(), "llama" | "qwen2") {
            bail!("unsupported architecture `{}` (supported: llama, qwen2)", self.architecture);
        }
        if self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0 {
            bail!("num_heads {} is not a multiple of num_kv_heads {}", self.num_heads, self.num_kv_heads);
        }
        if self.head_dim % 2 != 0 {
            bail!("head_dim {} must be even for RoPE", self.head_dim);
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub o: Linear<B>,
    /// q, k and v's quantised rows stacked, for one product on the inference path.
    #[module(skip)]
    pub qkv_quant: Option<Arc<QuantMatrix>>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate: Linear<B>,
    pub up: Linear<B>,
    pub down: Linear<B>,
    /// gate and up's quantised rows stacked, for one product on the inference path.
    #[module(skip)]
    pub gate_up_quant: Option<Arc<QuantMatrix>>,
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub attn_norm: RmsNorm<B>,
    pub attn: Attention<B>,
    pub mlp_norm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    /// The token embeddings stored as `[hidden, vocab]`, the LM head's orientation: a lookup
    /// gathers a few columns, while the head's product over the whole vocabulary runs on a
    /// contiguous matrix (a transposed `[vocab, hidden]` view costs the candle backend a 113 MB
    /// copy per decode step for SmolLM2). Also the LM head when the embeddings are tied.
    pub embed: Param<Tensor<B, 2>>,
    pub blocks: Vec<Block<B>>,
    pub norm: RmsNorm<B>,
    /// Untied LM head, `[hidden, vocab]`.
    pub lm_head: Option<Linear<B>>,
    /// The tied head as a GGUF file stores the embeddings, for inference (see [`Linear::quant`]).
    #[module(skip)]
    pub embed_quant: Option<Arc<QuantMatrix>>,
    /// RoPE tables `[max_position, head_dim]`, constants rather than parameters.
    pub rope_cos: Tensor<B, 2>,
    pub rope_sin: Tensor<B, 2>,
}

/// Finite, so a row with nothing to attend to (a pad query) softmaxes to uniform instead of NaN.
const MASKED: f32 = -1e30;

/// Each new token's position: the real tokens before it, cached (`past`) or new.
fn positions(past: &[usize], new: &[Vec<bool>]) -> Vec<i64> {
    let mut positions = Vec::with_capacity(new.iter().map(Vec::len).sum());
    for (row, &past) in new.iter().zip(past) {
        let mut seen = past as i64;
        for &valid in row {
            positions.push(seen);
            seen += i64::from(valid);
        }
    }
    positions
}

/// The additive causal mask of a step with nothing cached, `[batch, 1, new, new]`: 0 where a token
/// may attend to a real token at or before it, a large negative elsewhere (left padding).
fn causal_mask(new: &[Vec<bool>]) -> Vec<f32> {
    let t = new.first().map_or(0, Vec::len);
    let mut mask = vec![MASKED; new.len() * t * t];
    for (b, row) in new.iter().enumerate() {
        for q in 0..t {
            for s in (0..=q).filter(|&s| row[s]) {
                mask[(b * t + q) * t + s] = 0.0;
            }
        }
    }
    mask
}

impl<B: Backend> Decoder<B> {
    pub fn config_dims(&self) -> (usize, usize) {
        let [hidden, vocab] = self.embed.dims();
        (vocab, hidden)
    }

    /// One forward step over `ids` (`[batch][new]`, all rows the same length; `valid` marks real
    /// tokens). With a `cache`, the new tokens follow its sequences (one cache row per batch row)
    /// and their keys and values are appended to it. Returns the last layer's hidden states after
    /// the final norm, `[batch, new, hidden]`.
    pub fn forward(&self, ids: &[Vec<u32>], valid: &[Vec<bool>], cache: Option<&mut KvCache>) -> Tensor<B, 3> {
        self.forward_probed(ids, valid, cache, &mut |_, _| {})
    }

    /// [`Decoder::forward`], handing each layer's output (the residual stream after block `i`)
    /// to `probe`: where a run's activations first overflow or turn NaN.
    pub fn forward_probed(
        &self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        mut cache: Option<&mut KvCache>,
        probe: &mut dyn FnMut(usize, &Tensor<B, 3>),
    ) -> Tensor<B, 3> {
        let batch = ids.len();
        let cached = cache.as_deref().is_some_and(|c| !c.is_empty());
        let past: Vec<usize> =
            (0..batch).map(|b| if cached { cache.as_deref().map_or(0, |c| c.tokens(b)) } else { 0 }).collect();
        let pass = self.pass(valid, &past, cached);
        let mut x = self.embed_tokens(ids);
        for layer in 0..self.blocks.len() {
            x = self.block_step(layer, x, &pass, cache.as_deref_mut());
            probe(layer, &x);
        }
        self.norm.forward(x)
    }

    /// What every block of a pass over `valid`'s tokens shares, with nothing cached: a caller
    /// that runs the blocks one at a time ([`Decoder::block_forward`]) builds it once.
    pub fn full_pass<'a>(&self, valid: &'a [Vec<bool>]) -> Pass<'a, B> {
        self.pass(valid, &vec![0; valid.len()], false)
    }

    fn pass<'a>(&self, valid: &'a [Vec<bool>], past: &[usize], cached: bool) -> Pass<'a, B> {
        let device = self.embed.device();
        let batch = valid.len();
        let t_new = valid.first().map_or(0, Vec::len);
        let pos_t = Tensor::<B, 1, Int>::from_data(TensorData::new(positions(past, valid), [batch * t_new]), &device);
        let head_dim = self.rope_cos.dims()[1];
        let cos = self.rope_cos.clone().select(0, pos_t.clone()).reshape([batch, 1, t_new, head_dim]);
        let sin = self.rope_sin.clone().select(0, pos_t).reshape([batch, 1, t_new, head_dim]);
        // Steps that follow cached tokens attend on the host, inside the cache (see `kv_cache`).
        let mask = (!cached).then(|| tensor::<B, 4>(causal_mask(valid), [batch, 1, t_new, t_new], &device));
        Pass { valid, cos, sin, mask }
    }

    /// The residual stream entering block 0: each token's embedding, `[batch, new, hidden]`.
    pub fn embed_tokens(&self, ids: &[Vec<u32>]) -> Tensor<B, 3> {
        let device = self.embed.device();
        let batch = ids.len();
        let t_new = ids.first().map_or(0, Vec::len);
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i as i64).collect();
        let ids_t = Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [batch * t_new]), &device);
        let hidden_size = self.embed.dims()[0];
        // The identity product between gather and transpose hands the gather's backward (an
        // index-add) a contiguous gradient: candle's index-add rejects the transposed one.
        let gathered = self.embed.val().select(1, ids_t).mul_scalar(1.0);
        gathered.transpose().reshape([batch, t_new, hidden_size])
    }

    /// Block `layer` over the residual stream `x` of a [`Decoder::full_pass`].
    pub fn block_forward(&self, layer: usize, x: Tensor<B, 3>, pass: &Pass<B>) -> Tensor<B, 3> {
        self.block_step(layer, x, pass, None)
    }

    fn block_step(&self, layer: usize, x: Tensor<B, 3>, pass: &Pass<B>, cache: Option<&mut KvCache>) -> Tensor<B, 3> {
        let block = &self.blocks[layer];
        let step = Step { layer, valid: pass.valid, mask: pass.mask.as_ref(), cache };
        let x = x.clone() + block.attn.forward(block.attn_norm.forward(x), &pass.cos, &pass.sin, step);
        x.clone() + block.mlp.forward(block.mlp_norm.forward(x))
    }

    /// Logits over the vocabulary for hidden states `[batch, t, hidden]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, t, h] = hidden.dims();
                let vocab = self.embed.dims()[1];
                let rows = hidden.reshape([b * t, h]);
                let logits = match quantized_for(&self.embed_quant, b * t) {
                    Some(q) => quantized_matmul(q, rows),
                    None => precision::matmul(rows, self.embed.val()),
                };
                logits.reshape([b, t, vocab])
            }
        }
    }

    /// Adds a row to the vocabulary for each of `rows` (new special tokens), in the embedding
    /// and in an untied LM head: a copy of an existing token's row where one is named, else the
    /// mean of the existing rows.
    pub fn grow_vocab(mut self, rows: &[Option<u32>]) -> Self {
        if rows.is_empty() {
            return self;
        }
        // Built on the host: a fresh, contiguous leaf (candle's concatenation along dim 1 is a
        // strided view, which its index-select rejects; under autodiff it is not a leaf either).
        let grow = |w: Tensor<B, 2>| -> Tensor<B, 2> {
            let device = w.device();
            let [hidden, vocab] = w.dims();
            let values = host(w);
            let mut out = Vec::with_capacity(hidden * (vocab + rows.len()));
            for row in values.chunks(vocab) {
                let mean = (row.iter().map(|&x| x as f64).sum::<f64>() / vocab as f64) as f32;
                out.extend_from_slice(row);
                out.extend(rows.iter().map(|source| source.map_or(mean, |id| row[id as usize])));
            }
            tensor(out, [hidden, vocab + rows.len()], &device)
        };
        self.embed = Param::from_tensor(grow(self.embed.val()));
        self.embed_quant = None;
        if let Some(head) = self.lm_head.as_mut() {
            head.weight = Param::from_tensor(grow(head.weight.val()));
        }
        self
    }

    /// Builds the decoder from tensors under Hugging Face names.
    pub fn load(config: &DecoderConfig, source: &mut dyn WeightSource, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let h = config.hidden_size;
        let hd = config.head_dim;
        let linear =
            |source: &mut dyn WeightSource, name: &str, d_in: usize, d_out: usize, bias: bool| -> Result<Linear<B>> {
                let w = source.expect(&format!("{name}.weight"), &[d_out, d_in])?;
                let bias = if bias {
                    Some(tensor(source.expect(&format!("{name}.bias"), &[d_out])?, [d_out], device))
                } else {
                    None
                };
                Ok(Linear::new(tensor(transpose_host(&w, d_out, d_in), [d_in, d_out], device), bias))
            };
        let norm = |source: &mut dyn WeightSource, name: &str| -> Result<RmsNorm<B>> {
            let w = source.expect(name, &[h])?;
            Ok(RmsNorm { weight: Param::from_tensor(tensor(w, [h], device)), eps: config.rms_norm_eps })
        };
        let embed = source.expect("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let mut blocks = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("model.layers.{i}");
            blocks.push(Block {
                attn_norm: norm(source, &format!("{p}.input_layernorm.weight"))?,
                attn: Attention {
                    q: linear(source, &format!("{p}.self_attn.q_proj"), h, config.num_heads * hd, config.qkv_bias)?,
                    k: linear(source, &format!("{p}.self_attn.k_proj"), h, config.num_kv_heads * hd, config.qkv_bias)?,
                    v: linear(source, &format!("{p}.self_attn.v_proj"), h, config.num_kv_heads * hd, config.qkv_bias)?,
                    o: linear(source, &format!("{p}.self_attn.o_proj"), config.num_heads * hd, h, false)?,
                    qkv_quant: None,
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: hd,
                },
                mlp_norm: norm(source, &format!("{p}.post_attention_layernorm.weight"))?,
                mlp: Mlp {
                    gate: linear(source, &format!("{p}.mlp.gate_proj"), h, config.intermediate_size, false)?,
                    up: linear(source, &format!("{p}.mlp.up_proj"), h, config.intermediate_size, false)?,
                    down: linear(source, &format!("{p}.mlp.down_proj"), config.intermediate_size, h, false)?,
                    gate_up_quant: None,
                },
            });
        }
        let norm = norm(source, "model.norm.weight")?;
        let lm_head =
            if config.tie_embeddings { None } else { Some(linear(source, "lm_head", h, config.vocab_size, false)?) };
        let (rope_cos, rope_sin) = rope_tables(config, device);
        Ok(Self {
            embed: Param::from_tensor(tensor(
                transpose_host(&embed, config.vocab_size, h),
                [h, config.vocab_size],
                device,
            )),
            blocks,
            norm,
            lm_head,
            embed_quant: None,
            rope_cos,
            rope_sin,
        })
    }

    /// Multiplies by the GGUF file's Q4_0 / Q4_1 / Q8_0 blocks as stored wherever the file has
    /// them (the f32 weights stay for anything else, such as training). For inference only: a
    /// model whose weights then change must not be quantised.
    pub fn use_quantized(&mut self, gguf: &mut GgufFile) -> Result<usize> {
        let mut count = 0;
        let mut attach = |linear: &mut Linear<B>, name: String| -> Result<()> {
            if let Some(q) = gguf.read_quantized(&format!("{name}.weight"))? {
                linear.quant = Some(Arc::new(q));
                count += 1;
            }
            Ok(())
        };
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            attach(&mut block.attn.q, format!("{p}.self_attn.q_proj"))?;
            attach(&mut block.attn.k, format!("{p}.self_attn.k_proj"))?;
            attach(&mut block.attn.v, format!("{p}.self_attn.v_proj"))?;
            attach(&mut block.attn.o, format!("{p}.self_attn.o_proj"))?;
            attach(&mut block.mlp.gate, format!("{p}.mlp.gate_proj"))?;
            attach(&mut block.mlp.up, format!("{p}.mlp.up_proj"))?;
            attach(&mut block.mlp.down, format!("{p}.mlp.down_proj"))?;
            let stacked = |layers: &[&Linear<B>]| -> Option<Arc<QuantMatrix>> {
                let parts: Option<Vec<&QuantMatrix>> = layers.iter().map(|l| l.quant.as_deref()).collect();
                QuantMatrix::stack(&parts?).map(Arc::new)
            };
            // The stacked copy replaces the layers' own (they are only multiplied together).
            let a = &mut block.attn;
            a.qkv_quant = stacked(&[&a.q, &a.k, &a.v]);
            if a.qkv_quant.is_some() {
                for l in [&mut a.q, &mut a.k, &mut a.v] {
                    l.quant = None;
                }
            }
            let m = &mut block.mlp;
            m.gate_up_quant = stacked(&[&m.gate, &m.up]);
            if m.gate_up_quant.is_some() {
                for l in [&mut m.gate, &mut m.up] {
                    l.quant = None;
                }
            }
        }
        if let Some(head) = self.lm_head.as_mut() {
            attach(head, "lm_head".into())?;
        } else if let Some(q) = gguf.read_quantized("model.embed_tokens.weight")? {
            self.embed_quant = Some(Arc::new(q));
            count += 1;
        }
        Ok(count)
    }
}

/// `cos` and `sin` of `position · θ^(-2i/d)`, each frequency repeated over both halves of the head
/// dimension (HF's `cat((freqs, freqs))`).
pub fn rope_tables<B: Backend>(config: &DecoderConfig, device: &B::Device) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let hd = config.head_dim;
    let half = hd / 2;
    let inv: Vec<f64> = (0..half).map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / hd as f64)).collect();
    let n = config.max_position;
    let mut cos = Vec::with_capacity(n * hd);
    let mut sin = Vec::with_capacity(n * hd);
    for p in 0..n {
        // HF computes the angles in float32; matching that keeps long positions bit-close.
        let angles: Vec<f32> = inv.iter().map(|&f| (p as f32) * (f as f32)).collect();
        for _ in 0..2 {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| a.sin()));
        }
    }
    (tensor(cos, [n, hd], device), tensor(sin, [n, hd], device))
}

fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

/// What every block of one forward pass shares: RoPE at each token's position, and the causal
/// mask when nothing is cached.
pub struct Pass<'a, B: Backend> {
    valid: &'a [Vec<bool>],
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
    mask: Option<Tensor<B, 4>>,
}

/// What one layer's attention sees besides its input: a mask when nothing is cached (the whole
/// sequence is in the step), else the cache to attend in; with both, it fills the cache.
struct Step<'a, B: Backend> {
    layer: usize,
    valid: &'a [Vec<bool>],
    mask: Option<&'a Tensor<B, 4>>,
    cache: Option<&'a mut KvCache>,
}

impl<B: Backend> Attention<B> {
    fn forward(&self, x: Tensor<B, 3>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>, step: Step<B>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let x_device = x.device();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads = |y: Tensor<B, 3>, n: usize| y.reshape([b, t, n, hd]).swap_dims(1, 2);
        let [q, k, v] = match quantized_for(&self.qkv_quant, b * t) {
            Some(w) => Linear::forward_stacked([&self.q, &self.k, &self.v], w, x),
            None if fused_products() => Linear::forward_fused([&self.q, &self.k, &self.v], x),
            None => [self.q.forward(x.clone()), self.k.forward(x.clone()), self.v.forward(x)],
        };
        let (q, k, v) = (heads(q, nh), heads(k, nkv), heads(v, nkv));
        let q = q.clone() * cos.clone() + rotate_half(q) * sin.clone();
        let k = k.clone() * cos.clone() + rotate_half(k) * sin.clone();
        let Some(mask) = step.mask else {
            let cache = step.cache.expect("a step without a mask attends in the cache");
            let (q, k, v) = (host(q), host(k), host(v));
            let tensors = StepTensors { q: &q, k: &k, v: &v, heads: nh, kv_heads: nkv, head_dim: hd };
            let out = cache.attend(step.layer, &tensors, step.valid);
            return self.o.forward(tensor(out, [b, t, nh * hd], &x_device));
        };
        if let Some(cache) = step.cache {
            let (k, v) = (host(k.clone()), host(v.clone()));
            let tensors = StepTensors { q: &[], k: &k, v: &v, heads: nh, kv_heads: nkv, head_dim: hd };
            cache.store(step.layer, &tensors, step.valid);
        }
        // Grouped-query attention without copying the cache per query head: the `rep` query heads
        // that share a key/value head become `rep · t` rows against that head's keys (the mask
        // rows tiled to match), then fold back.
        let rep = nh / nkv;
        let q = q.reshape([b, nkv, rep * t, hd]);
        let mask = if rep == 1 { mask.clone() } else { mask.clone().repeat_dim(2, rep) };
        let scores = precision::matmul(q, k.clone().swap_dims(2, 3)).mul_scalar(1.0 / (hd as f64).sqrt()) + mask;
        let out = precision::matmul(softmax(scores, 3), v.clone()).reshape([b, nh, t, hd]);
        let out = out.swap_dims(1, 2).reshape([b, t, nh * hd]);
        self.o.forward(out)
    }
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, t, _] = x.dims();
        let [gate, up] = match quantized_for(&self.gate_up_quant, b * t) {
            Some(w) => Linear::forward_stacked([&self.gate, &self.up], w, x),
            None if fused_products() => Linear::forward_fused([&self.gate, &self.up], x),
            None => [self.gate.forward(x.clone()), self.up.forward(x)],
        };
        self.down.forward(silu(gate) * up)
    }
}
