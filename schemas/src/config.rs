//! Typed configuration of a pipeline run (TOML). Unknown keys are errors, so a typo never turns
//! into a silently ignored setting; every threshold of every stage lives here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// A whole `lrem-pipeline run` configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub inputs: Inputs,
    /// Where tables, manifest and cache go (local path or `s3://bucket/prefix`).
    #[serde(default = "default_run_dir")]
    pub run_dir: String,
    /// Model endpoints by name; stages refer to them by that name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
    #[serde(default)]
    pub stages: Stages,
}

fn default_run_dir() -> String {
    "runs/default".into()
}

/// Input files: a Parquet, CSV or JSONL file, or a directory of Parquet parts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub items: PathBuf,
    pub query_log: PathBuf,
}

/// One OpenAI-compatible endpoint (vLLM, SGLang, TEI, llama.cpp, `lrem-train serve`, …).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself never goes in a file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay; later ones double up to `retry_max_secs`, each drawn with full jitter.
    #[serde(default = "default_retry_base")]
    pub retry_base_secs: f64,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: f64,
}

fn default_concurrency() -> u32 {
    32
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    6
}
fn default_retry_base() -> f64 {
    0.5
}
fn default_retry_max() -> f64 {
    30.0
}

/// Per-stage settings; every field has a default so a config names only what it changes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Stages {
    pub retrieval: Retrieval,
    pub mining: Mining,
    pub reasoning: Generation,
    pub keywords: Generation,
    pub cot: Cot,
    pub relevance: Relevance,
    pub split: Split,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Retrieval {
    /// Endpoint (by name) that embeds items and queries.
    pub endpoint: String,
    /// Top-K of sets ① and ②.
    pub k: u32,
    /// Texts per embeddings request.
    pub batch_size: u32,
    /// `exact` (blocked matrix products) or `hnsw` (approximate, for large catalogues).
    pub index: IndexKind,
    /// HNSW search breadth (raised to `k` when smaller): higher is slower and closer to exact.
    pub ef_search: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    Exact,
    Hnsw,
}

impl Default for Retrieval {
    fn default() -> Self {
        Self { endpoint: "embedder".into(), k: 100, batch_size: 64, index: IndexKind::Exact, ef_search: 256 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mining {
    /// A query must have been logged on at least this many days.
    pub min_days: u32,
    pub min_impressions: u64,
    /// Queries with a CTR above this are served well enough already.
    pub max_ctr: f64,
    /// At least this many engaged items must be missing from set ①.
    pub min_missed_items: u32,
    /// And they must be at least this share of the engaged items.
    pub min_missed_share: f64,
    /// Optional pattern priors: name → regular expression over the normalised query.
    pub patterns: BTreeMap<String, String>,
    /// Keep at most this many hard queries, the most searched first (ties by `query_id`); the
    /// rest are filtered as `over_max_queries`. 0 keeps all.
    pub max_queries: u64,
}

impl Default for Mining {
    fn default() -> Self {
        Self {
            min_days: 2,
            min_impressions: 20,
            max_ctr: 0.2,
            min_missed_items: 1,
            min_missed_share: 0.3,
            patterns: BTreeMap::new(),
            max_queries: 0,
        }
    }
}

/// A chat-completion stage (reasoning, keyword extraction).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Generation {
    pub endpoint: String,
    /// Prompt template path, relative to the config file.
    pub prompt: Option<PathBuf>,
    pub temperature: f64,
    pub max_tokens: u32,
    /// Send `response_format` with a JSON schema (vLLM, SGLang, llama.cpp and `lrem-train serve`
    /// constrain decoding with it; turn off for endpoints that reject the field).
    pub json_schema: bool,
}

impl Default for Generation {
    fn default() -> Self {
        Self { endpoint: "reasoner".into(), prompt: None, temperature: 0.0, max_tokens: 256, json_schema: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Cot {
    pub max_keywords: u32,
    /// Keywords dropped wherever they appear (compared after normalisation).
    pub banned: Vec<String>,
}

impl Default for Cot {
    fn default() -> Self {
        Self { max_keywords: 16, banned: Vec::new() }
    }
}

/// How gain pairs are scored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RelevanceMethod {
    /// LLM judge over chat completions (yes/no; logprobs when offered).
    Judge,
    /// A rerank endpoint (TEI / vLLM `/rerank`).
    Rerank,
    /// Cosine similarity of the retriever's embeddings.
    Similarity,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Relevance {
    pub method: RelevanceMethod,
    pub endpoint: String,
    pub prompt: Option<PathBuf>,
    /// Pairs scoring at least this are kept.
    pub threshold: f64,
}

impl Default for Relevance {
    fn default() -> Self {
        Self { method: RelevanceMethod::Similarity, endpoint: "embedder".into(), prompt: None, threshold: 0.5 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Split {
    /// Share of queries (not rows) that go to `triples_rl`; the paper used 4M of 75M.
    pub rl_fraction: f64,
    pub seed: u64,
}

impl Default for Split {
    fn default() -> Self {
        Self { rl_fraction: 0.05, seed: 0 }
    }
}

impl PipelineConfig {
    /// The model an endpoint serves, by the endpoint's name (what enters the stages' fingerprints).
    pub fn model_of(&self, endpoint: &str) -> Option<String> {
        self.endpoints.get(endpoint).map(|e| e.model.clone())
    }

    /// Read and check a config file; errors name the file, the key and what was expected.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let config: Self =
            toml::from_str(&text).map_err(|e| Error::Config { path: path.to_owned(), message: e.to_string() })?;
        config.check().map_err(|message| Error::Config { path: path.to_owned(), message })?;
        Ok(config)
    }

    /// Checks that types alone cannot express: ranges and references between sections.
    pub fn check(&self) -> Result<(), String> {
        let s = &self.stages;
        if s.retrieval.k == 0 {
            return Err("stages.retrieval.k must be at least 1".into());
        }
        if s.cot.max_keywords == 0 || s.cot.max_keywords > 16 {
            return Err(format!(
                "stages.cot.max_keywords must be in 1..=16 (LREM's CoT budget), got {}",
                s.cot.max_keywords
            ));
        }
        for (key, v) in [
            ("stages.mining.max_ctr", s.mining.max_ctr),
            ("stages.mining.min_missed_share", s.mining.min_missed_share),
            ("stages.split.rl_fraction", s.split.rl_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{key} must be within [0, 1], got {v}"));
            }
        }
        let mut used = vec![("stages.retrieval.endpoint", &s.retrieval.endpoint)];
        used.push(("stages.reasoning.endpoint", &s.reasoning.endpoint));
        used.push(("stages.keywords.endpoint", &s.keywords.endpoint));
        used.push(("stages.relevance.endpoint", &s.relevance.endpoint));
        for (key, name) in used {
            if !self.endpoints.contains_key(name) {
                let known: Vec<_> = self.endpoints.keys().map(String::as_str).collect();
                return Err(format!(
                    "{key} = \"{name}\" names no endpoint; define [endpoints.{name}] (defined: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            }
        }
        for (name, e) in &self.endpoints {
            if !(e.base_url.starts_with("http://") || e.base_url.starts_with("https://")) {
                return Err(format!(
                    "endpoints.{name}.base_url must start with http:// or https://, got {:?}",
                    e.base_url
                ));
            }
            if e.max_concurrency == 0 {
                return Err(format!("endpoints.{name}.max_concurrency must be at least 1"));
            }
            if !(e.timeout_secs > 0.0) {
                return Err(format!("endpoints.{name}.timeout_secs must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [inputs]
        items = "items.parquet"
        query_log = "query_log.parquet"
        [endpoints.embedder]
        base_url = "http://127.0.0.1:8000/v1"
        model = "all-MiniLM-L6-v2"
        [endpoints.reasoner]
        base_url = "http://127.0.0.1:8000/v1"
        model = "SmolLM2-135M-Instruct"
    "#;

    fn parse(text: &str) -> Result<PipelineConfig, String> {
        let c: PipelineConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn minimal_config_gets_paper_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.stages.retrieval.k, 100);
        assert_eq!(c.stages.cot.max_keywords, 16);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!("{MINIMAL}\n[stages.retrieval]\ntop_k = 5\n")).unwrap_err();
        assert!(err.contains("top_k"), "{err}");
    }

    #[test]
    fn negative_k_is_refused() {
        let err = parse(&format!("{MINIMAL}\n[stages.retrieval]\nk = -5\n")).unwrap_err();
        assert!(err.contains("k") && err.contains("-5"), "{err}");
    }

    #[test]
    fn missing_endpoint_is_named_with_the_defined_ones() {
        let err = parse(&format!("{MINIMAL}\n[stages.keywords]\nendpoint = \"extractor\"\n")).unwrap_err();
        assert!(err.contains("[endpoints.extractor]") && err.contains("embedder, reasoner"), "{err}");
    }
}

#[cfg(test)]
mod sample_config {
    #[test]
    fn committed_sample_config_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data_samples/pipeline.toml");
        let config = super::PipelineConfig::load(&path).unwrap();
        assert_eq!(config.stages.retrieval.k, 100);
        assert!(config.endpoints.contains_key("reasoner"));
    }
}
