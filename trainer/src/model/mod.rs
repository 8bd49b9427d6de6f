//! The model library: a Llama/Qwen2 decoder and a BERT encoder in Burn, loaded from GGUF files
//! or Hugging Face folders, with their tokenizers and chat templates, and batched generation.

pub mod bert;
pub mod blas_layout;
pub mod constrain;
#[cfg(feature = "cublas")]
pub mod cublas;
pub mod decoder;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod kv_cache;
pub mod layers;
pub mod penalties;
pub mod precision;
pub mod quant;
pub mod tokenizer;
pub mod weights;

use std::path::Path;

use burn::tensor::backend::Backend;

use decoder::{Decoder, DecoderConfig};
use tokenizer::TextTokenizer;

use crate::bail;
use crate::error::Result;

/// A decoder with its tokenizer, from a `.gguf` file or an HF folder (`config.json`,
/// safetensors, `tokenizer.json`).
pub struct LanguageModel<B: Backend> {
    pub config: DecoderConfig,
    pub model: Decoder<B>,
    pub tokenizer: TextTokenizer,
}

impl<B: Backend> LanguageModel<B> {
    pub fn load(path: &Path, device: &B::Device) -> Result<Self> {
        if !path.exists() {
            bail!("{}: no such file or directory", path.display());
        }
        if path.is_file() {
            let mut gguf = gguf::GgufFile::open(path)?;
            let config = gguf.decoder_config()?;
            let tokenizer = TextTokenizer::from_gguf(&gguf)?;
            let model = Decoder::load(&config, &mut gguf, device)?;
            return Ok(Self { config, model, tokenizer });
        }
        let config = hf::decoder_config(path)?;
        let tokenizer = TextTokenizer::from_hf_dir(path)?;
        let model = Decoder::load(&config, &mut hf::SafetensorsFolder::open(path)?, device)?;
        Ok(Self { config, model, tokenizer })
    }

    /// [`Self::load`], then a GGUF file's quantised blocks multiplied as stored (`quant`): for
    /// serving and generation, never for training. An HF folder loads as f32.
    pub fn load_quantized(path: &Path, device: &B::Device) -> Result<Self> {
        let mut lm = Self::load(path, device)?;
        if path.is_file() {
            let count = lm.model.use_quantized(&mut gguf::GgufFile::open(path)?)?;
            tracing::debug!(path = %path.display(), matrices = count, "multiplying GGUF blocks as stored");
        }
        Ok(lm)
    }
}
