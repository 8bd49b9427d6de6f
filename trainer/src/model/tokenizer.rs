//! Tokenizers and chat templates. A `tokenizer.json` is read by Hugging Face's `tokenizers`
//! crate; a GGUF file's byte-level BPE vocabulary is turned into the same `tokenizer.json` form,
//! so both paths run one implementation. Chat templates are Jinja, rendered by minijinja with the
//! settings transformers uses (`trim_blocks`, `lstrip_blocks`, `raise_exception`).

use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};
use tokenizers::{AddedToken, Tokenizer};

use super::gguf::GgufFile;
use crate::error::{Context, Result};
use crate::{bail, err};

/// The tokens LREM adds: the model thinks between the first two and embeds at the third.

#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Clone)]
pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl TextTokenizer {
    /// `tokenizer.json` plus, when present, `tokenizer_config.json` (chat template, BOS/EOS).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = Tokenizer::from_file(&path).map_err(|e| err!("{}: {e}", path.display()))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| config_path.display().to_string())?,
            Err(_) => Value::Null,
        };
        let token = |key: &str| match &config[key] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        Ok(Self {
            inner,
            chat_template: config["chat_template"].as_str().map(str::to_string),
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
        })
    }

    /// The byte-level BPE tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let model = gguf.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            bail!(
                "{}: tokenizer model `{model}` is not supported (supported: gpt2 byte-level BPE)",
                gguf.origin_path()
            );
        }
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let merges = gguf.strings("tokenizer.ggml.merges")?;
        let types = gguf.ints("tokenizer.ggml.token_type").unwrap_or_default();
        let pre = gguf.optional_string("tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
        // llama.cpp's pre-tokenizer names, as the Hugging Face pre-tokenizers they stand for.
        let byte_level =
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        let pre_tokenizer = match pre.as_str() {
            "smollm" => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level]}),
            "gpt2" | "default" => byte_level,
            other => {
                bail!("{}: pre-tokenizer `{other}` is not supported (supported: smollm, gpt2)", gguf.origin_path())
            }
        };
        let vocab: serde_json::Map<String, Value> =
            tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
        // GGUF token type 3 is "control": the special tokens of the chat format.
        let added: Vec<Value> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == 3 || **t == 4)
            .map(|(i, t)| {
                json!({"id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": *t == 4, "special": *t == 3})
            })
            .collect();
        let id_token = |key: &str| gguf.optional_u32(key).and_then(|id| tokens.get(id as usize).cloned());
        let bos_token = id_token("tokenizer.ggml.bos_token_id");
        let add_bos =
            gguf.metadata().get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        let post_processor = match (&bos_token, add_bos) {
            (Some(bos), true) => {
                let id = tokens.iter().position(|t| t == bos).unwrap_or(0);
                json!({"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {bos.as_str(): {"id": bos, "ids": [id], "tokens": [bos]}}})
            }
            _ => Value::Null,
        };
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": merges},
        });
        let inner = Tokenizer::from_bytes(serde_json::to_vec(&spec)?)
            .map_err(|e| err!("{}: building the tokenizer: {e}", gguf.origin_path()))?;
        Ok(Self {
            inner,
            chat_template: gguf.optional_string("tokenizer.chat_template"),
            bos_token,
            eos_token: id_token("tokenizer.ggml.eos_token_id"),
        })
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| err!("tokenizing: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| err!("detokenizing: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Ids that end generation: the EOS token and the chat format's end-of-turn token.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.eos_token.iter().filter_map(|t| self.token_id(t)).collect();
        for t in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
            if let Some(id) = self.token_id(t).filter(|id| !ids.contains(id)) {
                ids.push(id);
            }
        }
        ids
    }

    /// Adds special tokens that are not there yet; returns how many were new (their ids follow
    /// the existing vocabulary, so the embedding matrix grows by as many rows).
    pub fn add_special_tokens(&mut self, tokens: &[&str]) -> usize {
        let new: Vec<AddedToken> = tokens
            .iter()
            .filter(|t| self.token_id(t).is_none())
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        self.inner.add_special_tokens(&new)
    }

    /// Renders `messages` with the model's chat template, as `apply_chat_template` does.
    pub fn render_chat(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| err!("this model has no chat template"))?;
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", template).map_err(|e| err!("chat template: {e}"))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        env.get_template("chat")?.render(ctx).map_err(|e| err!("chat template: {e}"))
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (chat template, BOS/EOS) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("tokenizer.json");
        self.inner.save(&path, false).map_err(|e| err!("{}: {e}", path.display()))?;
        let config =
            json!({"chat_template": self.chat_template, "bos_token": self.bos_token, "eos_token": self.eos_token});
        std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_vec_pretty(&config)?)?;
        Ok(())
    }
}
