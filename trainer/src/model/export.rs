//! Writes a decoder as a Hugging Face folder (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `tokenizer_config.json`) that [`super::LanguageModel::load`], `serve` and
//! transformers read.

use std::path::Path;

use burn::tensor::backend::Backend;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::json;

use super::decoder::{Decoder, DecoderConfig};
use super::layers::{Linear, host, transpose_host};
use super::tokenizer::TextTokenizer;
use crate::err;
use crate::error::{Context, Result};

pub fn export_decoder<B: Backend>(
    model: &Decoder<B>,
    config: &DecoderConfig,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let (vocab, hidden) = model.config_dims();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    // Burn keeps `[in, out]`; HF wants PyTorch's `[out, in]`.
    let mut linear = |name: String, l: &Linear<B>| {
        let [d_in, d_out] = l.weight.dims();
        tensors.push((format!("{name}.weight"), vec![d_out, d_in], transpose_host(&host(l.weight.val()), d_in, d_out)));
        if let Some(b) = &l.bias {
            tensors.push((format!("{name}.bias"), vec![d_out], host(b.val())));
        }
    };
    for (i, block) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        linear(format!("{p}.self_attn.q_proj"), &block.attn.q);
        linear(format!("{p}.self_attn.k_proj"), &block.attn.k);
        linear(format!("{p}.self_attn.v_proj"), &block.attn.v);
        linear(format!("{p}.self_attn.o_proj"), &block.attn.o);
        linear(format!("{p}.mlp.gate_proj"), &block.mlp.gate);
        linear(format!("{p}.mlp.up_proj"), &block.mlp.up);
        linear(format!("{p}.mlp.down_proj"), &block.mlp.down);
    }
    if let Some(head) = &model.lm_head {
        linear("lm_head".into(), head);
    }
    for (i, block) in model.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        tensors.push((format!("{p}.input_layernorm.weight"), vec![hidden], host(block.attn_norm.weight.val())));
        tensors.push((format!("{p}.post_attention_layernorm.weight"), vec![hidden], host(block.mlp_norm.weight.val())));
    }
    tensors.push(("model.norm.weight".into(), vec![hidden], host(model.norm.weight.val())));
    tensors.push((
        "model.embed_tokens.weight".into(),
        vec![vocab, hidden],
        transpose_host(&host(model.embed.val()), hidden, vocab),
    ));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| err!("{n}: {e}"))?)))
        .collect::<Result<Vec<_>>>()?;
    let path = dir.join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).map_err(|e| err!("{}: {e}", path.display()))?;
    let hf = json!({
        "architectures": [if config.architecture == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": config.architecture,
        "vocab_size": vocab,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_position,
        "attention_bias": config.qkv_bias,
        "tie_word_embeddings": model.lm_head.is_none(),
        "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&hf)?)?;
    tokenizer.save(dir)
}

/// Writes a seeded random-weight decoder of `config` with `tokenizer` as an HF folder: a real
/// model's tokenizer over tiny weights, for tests and benchmarks.
pub fn export_random_decoder(config: &DecoderConfig, tokenizer: &TextTokenizer, seed: u64, dir: &Path) -> Result<()> {
    type Host = crate::backend::Cpu;
    let model = Decoder::<Host>::load(config, &mut super::weights::RandomWeights::new(seed), &Default::default())?;
    export_decoder(&model, config, tokenizer, dir)
}
