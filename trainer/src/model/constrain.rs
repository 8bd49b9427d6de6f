//! Decoding constrained to a JSON schema (`response_format: {"type": "json_schema"}`), by
//! llguidance: at every step it gives the set of tokens that keep the text a valid prefix of
//! some document of the schema, and every other logit is set to −∞ before sampling. This is the
//! engine vLLM, SGLang and llama.cpp use for structured outputs.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory, token_bytes_from_tokenizer_json};
use serde_json::Value;

use super::tokenizer::TextTokenizer;
use crate::error::Result;
use crate::{bail, err};

/// The token trie of one tokenizer and the parser factory built on it (once per model).
pub struct Grammars {
    factory: ParserFactory,
}

struct Env {
    trie: TokTrie,
    tokenizer: tokenizers::Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // The grammar's literals are UTF-8; a lossy read only touches bytes no literal holds.
        self.tokenizer
            .encode(String::from_utf8_lossy(s).as_ref(), false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }
}

impl Grammars {
    /// `eos` is the id that ends a completion once the document is complete.
    pub fn new(tokenizer: &TextTokenizer, eos: u32) -> Result<Self> {
        let json: Value = serde_json::from_str(&tokenizer.inner.to_string(false).map_err(|e| err!("{e}"))?)?;
        let words = token_bytes_from_tokenizer_json(&json)?;
        let trie = TokTrie::from(&TokRxInfo::new(words.len() as u32, eos), &words);
        let env: TokEnv = Arc::new(Env { trie, tokenizer: tokenizer.inner.clone() });
        let mut factory = ParserFactory::new_simple(&env)?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// A fresh matcher for the schema of an OpenAI `response_format`; `Ok(None)` for `text`.
    pub fn for_response_format(&self, format: &Value) -> Result<Option<Constraint>> {
        let grammar = match format["type"].as_str() {
            Some("text") => return Ok(None),
            Some("json_object") => TopLevelGrammar::from_json_schema(serde_json::json!({"type": "object"})),
            Some("json_schema") => {
                let schema = &format["json_schema"]["schema"];
                if !schema.is_object() {
                    bail!("response_format.json_schema.schema must be a JSON schema object");
                }
                TopLevelGrammar::from_json_schema(schema.clone())
            }
            other => bail!("response_format type {other:?} is not one of text, json_object, json_schema"),
        };
        let parser = self.factory.create_parser(grammar)?;
        Ok(Some(Constraint(Matcher::new(Ok(parser)))))
    }
}

/// The state of one constrained sequence.
pub struct Constraint(Matcher);

impl Constraint {
    /// Sets the logits of every token the grammar forbids next to −∞ (only EOS once complete).
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.0.compute_mask_or_eos()?;
        for (id, logit) in logits.iter_mut().enumerate() {
            if id >= allowed.len() || !allowed.is_allowed(id as TokenId) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    pub fn commit(&mut self, token: u32) -> Result<()> {
        Ok(self.0.consume_token(token)?)
    }

    /// The document is complete: nothing but EOS may follow.
    pub fn is_complete(&self) -> bool {
        self.0.is_stopped()
    }
}

/// Each of a request's `n` samples walks the grammar on its own.
impl Clone for Constraint {
    fn clone(&self) -> Self {
        Self(self.0.deep_clone())
    }
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Constraint")
    }
}
