//! The prompt templates in force and their rendering.

use std::path::{Path, PathBuf};

use lrem_schemas::config::PipelineConfig;

use crate::Error;

/// Prompt templates in force (the repo's versioned defaults, or files named in the config).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prompts {
    pub reasoning: String,
    pub keywords: String,
    pub keywords_repair: String,
    pub relevance_judge: String,
}

impl Prompts {
    pub fn load(config: &PipelineConfig, config_dir: &Path) -> Result<Self, Error> {
        let read = |path: &Option<PathBuf>, default: &str| -> Result<String, Error> {
            match path {
                None => Ok(default.to_string()),
                Some(p) => {
                    let full = config_dir.join(p);
                    std::fs::read_to_string(&full).map_err(|e| Error::io(&full, e))
                }
            }
        };
        let s = &config.stages;
        Ok(Self {
            reasoning: read(&s.reasoning.prompt, include_str!("../../prompts/reasoning.v2.txt"))?,
            keywords: read(&s.keywords.prompt, include_str!("../../prompts/keywords.v3.txt"))?,
            keywords_repair: include_str!("../../prompts/keywords_repair.v2.txt").to_string(),
            relevance_judge: read(&s.relevance.prompt, include_str!("../../prompts/relevance_judge.v1.txt"))?,
        })
    }
}

/// Renders a prompt template with minijinja (`{{ query }}`, …); an unknown variable is an error.
pub fn render(template: &str, vars: serde_json::Value) -> Result<String, Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, vars).map_err(|e| Error::Usage(format!("prompt template: {e}")))
}
