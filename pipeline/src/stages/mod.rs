//! The stages of the DAG, in the order they run. Relational stages are SQL files in `sql/stages/`
//! run by DataFusion ([`sql_stage`]); model stages stream rows through the HTTP clients
//! ([`model`], [`chat`]); all of them write through [`parts`] or [`sql_stage`] so that counting,
//! failures and resume work the same way everywhere.

pub mod chat;
mod columns;
pub mod cot;
pub mod cot_rules;
pub mod keyword_parse;
pub mod model;
pub mod parts;
pub mod sql_stage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use lrem_schemas::config::{PipelineConfig, RelevanceMethod};
use serde_json::json;

use crate::Error;
use crate::client::ModelClient;
use crate::progress::Progress;
use crate::sql::Inspector;
pub use parts::Counts;

/// Bumped when a stage's code changes what it writes, so old outputs are not reused.
const STAGE_CODE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StageId {
    Queries,
    ItemEmbeddings,
    Retrieval1,
    HardQueries,
    Reasoning,
    Keywords,
    Cot,
    Retrieval2,
    Gain,
    Relevance,
    Triples,
}

impl StageId {
    pub const ALL: [StageId; 11] = [
        StageId::Queries,
        StageId::ItemEmbeddings,
        StageId::Retrieval1,
        StageId::HardQueries,
        StageId::Reasoning,
        StageId::Keywords,
        StageId::Cot,
        StageId::Retrieval2,
        StageId::Gain,
        StageId::Relevance,
        StageId::Triples,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageId::Queries => "queries",
            StageId::ItemEmbeddings => "item_embeddings",
            StageId::Retrieval1 => "retrieval_1",
            StageId::HardQueries => "hard_queries",
            StageId::Reasoning => "reasoning",
            StageId::Keywords => "keywords",
            StageId::Cot => "cot",
            StageId::Retrieval2 => "retrieval_2",
            StageId::Gain => "gain",
            StageId::Relevance => "relevance",
            StageId::Triples => "triples",
        }
    }

    pub fn parse(name: &str) -> Result<Self, Error> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let valid: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
            Error::Usage(format!("no stage named `{name}`; the stages are: {}", valid.join(", ")))
        })
    }

    pub fn upstream(self) -> &'static [StageId] {
        use StageId::*;
        match self {
            Queries | ItemEmbeddings => &[],
            Retrieval1 => &[Queries, ItemEmbeddings],
            HardQueries => &[Queries, Retrieval1],
            Reasoning => &[HardQueries],
            Keywords => &[Reasoning],
            Cot => &[Keywords],
            Retrieval2 => &[Cot, ItemEmbeddings],
            Gain => &[Retrieval2, Retrieval1],
            Relevance => &[Gain],
            Triples => &[Relevance],
        }
    }

    /// Tables the stage writes (and deletes when it must rerun).
    pub fn tables(self) -> &'static [&'static str] {
        use StageId::*;
        match self {
            Queries => &["queries"],
            ItemEmbeddings => &["item_embeddings"],
            Retrieval1 => &["retrieval_1"],
            HardQueries => &["hard_queries"],
            Reasoning => &["reasoning"],
            Keywords => &["keywords"],
            Cot => &["cot"],
            Retrieval2 => &["retrieval_2"],
            Gain => &["gain"],
            Relevance => &["relevance"],
            Triples => &["triples", "triples_cold_start", "triples_rl"],
        }
    }

    /// Endpoints the stage calls.
    pub fn endpoints(self, config: &PipelineConfig) -> Vec<String> {
        let s = &config.stages;
        match self {
            StageId::ItemEmbeddings | StageId::Retrieval1 | StageId::Retrieval2 => vec![s.retrieval.endpoint.clone()],
            StageId::Reasoning => vec![s.reasoning.endpoint.clone()],
            StageId::Keywords => vec![s.keywords.endpoint.clone()],
            StageId::Relevance if s.relevance.method != RelevanceMethod::Similarity => {
                vec![s.relevance.endpoint.clone()]
            }
            _ => vec![],
        }
    }

    /// Everything of the configuration and prompts that can change this stage's output.
    pub fn own_settings(self, config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value {
        let s = &config.stages;
        let model_of = |name: &String| config.endpoints.get(name).map(|e| e.model.clone());
        match self {
            StageId::Queries => json!({ "query_log": config.inputs.query_log }),
            StageId::ItemEmbeddings => {
                json!({ "items": config.inputs.items, "model": model_of(&s.retrieval.endpoint) })
            }
            StageId::Retrieval1 | StageId::Retrieval2 => json!({
                "k": s.retrieval.k, "index": s.retrieval.index, "ef_search": s.retrieval.ef_search,
                "model": model_of(&s.retrieval.endpoint),
            }),
            StageId::HardQueries => json!({ "mining": s.mining, "k": s.retrieval.k }),
            StageId::Reasoning => {
                json!({ "generation": s.reasoning, "model": model_of(&s.reasoning.endpoint), "prompt": prompts.reasoning })
            }
            StageId::Keywords => json!({
                "generation": s.keywords, "model": model_of(&s.keywords.endpoint),
                "prompt": prompts.keywords, "repair": prompts.keywords_repair,
            }),
            // The prompts' own words are what `prompt_echo` drops.
            StageId::Cot => json!({
                "cot": s.cot, "templates": [&prompts.reasoning, &prompts.keywords, &prompts.keywords_repair],
            }),
            StageId::Gain => json!({}),
            StageId::Relevance => json!({
                "relevance": s.relevance, "model": model_of(&s.relevance.endpoint), "prompt": prompts.relevance_judge,
            }),
            StageId::Triples => {
                json!({ "items": config.inputs.items, "split": s.split, "threshold": s.relevance.threshold })
            }
        }
    }
}

/// Prompt templates in force (the repo's versioned defaults, or files named in the config).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prompts {
    pub reasoning: String,
    pub keywords: String,
    pub keywords_repair: String,
    pub relevance_judge: String,
}

impl Prompts {
    pub fn load(config: &PipelineConfig, config_dir: &std::path::Path) -> Result<Self, Error> {
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

/// One of `count` shards of the per-query stages: the queries with `query_id % count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `i/n` (0 <= i < n).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || Error::Usage(format!("--shard {text}: expected i/n with 0 <= i < n, e.g. 0/8"));
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

/// Stages that run once for the whole run, before the per-query (shardable) ones.
pub fn is_shared(stage: StageId) -> bool {
    matches!(stage, StageId::Queries | StageId::ItemEmbeddings | StageId::Retrieval1 | StageId::HardQueries)
}

/// What a stage runs with.
pub struct StageCtx {
    pub shard: Option<Shard>,
    pub run_dir: PathBuf,
    pub config: PipelineConfig,
    pub prompts: Prompts,
    pub tables: Inspector,
    pub clients: BTreeMap<String, Arc<ModelClient>>,
    pub progress: Progress,
}

impl StageCtx {
    /// SQL condition selecting this shard's rows by `column` (`TRUE` when not sharded).
    pub fn shard_filter(&self, column: &str) -> String {
        match self.shard {
            None => "TRUE".into(),
            Some(s) => format!("{column} % {} = {}", s.count, s.index),
        }
    }

    /// Where this run (or shard) writes `table`.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        shard_dir(self.run_dir.join("tables").join(table), self.shard)
    }

    pub fn failures_dir(&self, stage: &str) -> PathBuf {
        shard_dir(self.run_dir.join("tables").join("failures").join(format!("stage={stage}")), self.shard)
    }

    pub fn client(&self, name: &str) -> Result<Arc<ModelClient>, Error> {
        self.clients.get(name).cloned().ok_or_else(|| Error::Internal(format!("no client for endpoint {name}")))
    }
}

/// Runs one stage; returns its funnel counts.
pub async fn run_stage(stage: StageId, ctx: &StageCtx) -> Result<Counts, Error> {
    match stage {
        StageId::Queries => sql_stage::queries(ctx).await,
        StageId::ItemEmbeddings => model::item_embeddings(ctx).await,
        StageId::Retrieval1 => model::retrieval(ctx, model::Set::First).await,
        StageId::HardQueries => sql_stage::hard_queries(ctx).await,
        StageId::Reasoning => chat::reasoning(ctx).await,
        StageId::Keywords => chat::keywords(ctx).await,
        StageId::Cot => cot::cot(ctx).await,
        StageId::Retrieval2 => model::retrieval(ctx, model::Set::Second).await,
        StageId::Gain => sql_stage::gain(ctx).await,
        StageId::Relevance => model::relevance(ctx).await,
        StageId::Triples => sql_stage::triples(ctx).await,
    }
}

/// Fingerprint = hash of the stage's settings and its upstream fingerprints.
pub fn fingerprint(stage: StageId, config: &PipelineConfig, prompts: &Prompts, upstream: &[String]) -> String {
    let value = json!({
        "stage": stage.name(),
        "code": STAGE_CODE_VERSION,
        "settings": stage.own_settings(config, prompts),
        "upstream": upstream,
    });
    let bytes = serde_json::to_vec(&value).expect("serialises");
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

/// Rows of a trusted SQL statement, converted batch by batch by `convert`, as a stream.
pub async fn rows<T: Send + 'static>(
    ctx: &StageCtx,
    sql: &str,
    convert: fn(&arrow::array::RecordBatch) -> Result<Vec<T>, Error>,
) -> Result<impl futures::Stream<Item = Result<T, Error>> + use<T>, Error> {
    use futures::StreamExt;
    let stream = ctx.tables.frame(sql).await?.execute_stream().await?;
    Ok(stream.flat_map(move |batch| {
        let items: Vec<Result<T, Error>> = match batch.map_err(Error::from).and_then(|b| convert(&b)) {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    }))
}

/// The single integer a `select count(*) …` returns.
pub async fn count_rows(ctx: &StageCtx, sql: &str) -> Result<u64, Error> {
    let batches = ctx.tables.frame(sql).await?.collect().await?;
    let array =
        batches.first().map(|b| b.column(0).clone()).ok_or_else(|| Error::Internal(format!("no rows: {sql}")))?;
    let n = arrow::compute::cast(&array, &arrow::datatypes::DataType::Int64)?;
    Ok(n.as_any().downcast_ref::<arrow::array::Int64Array>().expect("int64").value(0) as u64)
}

/// The start of a long text, for messages.
pub fn preview(text: &str) -> String {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() { format!("{}…", &text[..end]) } else { text.to_string() }
}

fn shard_dir(dir: PathBuf, shard: Option<Shard>) -> PathBuf {
    match shard {
        None => dir,
        Some(s) => dir.join(format!("shard={}", s.index)),
    }
}
