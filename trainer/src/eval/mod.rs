//! `lrem-train eval`: exact top-K retrieval over the catalogue for held-out judged queries,
//! comparing the cold-start model (with the paper's CoT ablations) against the direct
//! embedding retriever and the untrained decoder. Writes `report.md`, `eval.json`, `recall.svg`.

pub mod inputs;
pub mod metrics;
mod report;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::err;
use crate::error::{Context, Result};
use crate::format::{LremSettings, Prompting, normalised, pool_last};
use crate::lrem::{CotEnding, LremModel};
use crate::model::LanguageModel;
use crate::model::bert::SentenceEncoder;
use crate::model::penalties::Penalties;
use crate::triples::{self, Split};
use inputs::JudgedQuery;
use lrem_schemas::holdout::Holdout;

/// What to evaluate; also the `lrem-train eval` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalSpec {
    /// A folder with items.parquet and qrels.parquet.
    #[arg(long = "data")]
    pub data_dir: PathBuf,
    /// Pipeline runs whose training queries are held out (repeatable).
    #[arg(long)]
    pub exclude_run: Vec<PathBuf>,
    /// Judged queries per group (head; hard, or with --needs hard of unseen needs and hard
    /// unseen phrasings), seeded; 0: every one.
    #[arg(long, default_value_t = 16)]
    pub queries_per_kind: usize,
    /// The sample world's `needs` table: hard queries are then only those held out by need
    /// (`lrem_schemas::holdout` with --holdout-seed), reported as unseen needs and unseen
    /// phrasings of trained needs.
    #[arg(long)]
    pub needs: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub holdout_seed: u64,
    /// With --needs: the first --lrem model with a CoT also embeds each hard query with its
    /// need's product types as the CoT (what the reference teacher answers), head queries with
    /// an empty one; MiniLM, when given, embeds the query followed by the same words. Diagnostic
    /// bounds (the right CoT given), never retrievers.
    #[arg(long, requires = "needs")]
    pub oracle_cot: bool,
    /// With --needs: the hard queries are the validation needs' phrasings instead of the held-out
    /// ones. For choosing a schedule; a reported result never comes from this.
    #[arg(long, requires = "needs")]
    pub validation: bool,
    /// Items ranked: every relevant item of the chosen queries plus this many seeded random
    /// others (0: the whole catalogue).
    #[arg(long, default_value_t = 0)]
    pub catalogue: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, default_value_t = 16)]
    pub cot_max_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub ks: Vec<usize>,
    #[arg(long)]
    pub minilm: Option<PathBuf>,
    /// The untrained decoder (last-token pooling).
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// A trained model folder, as NAME=DIR (the name holds no `=`); the first also gets the
    /// CoT ablations.
    #[arg(long = "lrem", value_parser = parse_named)]
    pub lrem: Vec<(String, PathBuf)>,
    /// The paper's CoT-budget study: the --lrem model of this name also generates its CoT under
    /// each of --budgets tokens (a row each).
    #[arg(long)]
    pub budget_study: Option<String>,
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    pub budgets: Vec<usize>,
    /// Repetition controls for every generated CoT (`off`, or `+`-joined `presence=P`,
    /// `frequency=F`, `repetition=R`, `no-repeat-ngram=N`); without it each model's `lrem.json`
    /// decides (off unless set there).
    #[arg(long)]
    pub cot_penalties: Option<Penalties>,
    /// The --lrem model of this name also generates its CoT under each of --penalty-settings
    /// (a row each), as the budget study does for lengths.
    #[arg(long)]
    pub penalty_study: Option<String>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "no-repeat-ngram=2,no-repeat-ngram=3,repetition=1.2,frequency=0.5"
    )]
    pub penalty_settings: Vec<Penalties>,
}

fn parse_named(s: &str) -> Result<(String, PathBuf), String> {
    let (name, dir) = s.split_once('=').ok_or_else(|| format!("expected NAME=DIR, got `{s}`"))?;
    Ok((name.to_string(), PathBuf::from(dir)))
}

/// Means over the queries of one split, each with its 95% bootstrap interval over queries.
#[derive(Debug, Clone, Serialize)]
pub struct SplitMetrics {
    pub queries: usize,
    /// One per cut-off, k already capped at the catalogue.
    pub at: Vec<AtCutoff>,
    pub mrr: metrics::Estimate,
    /// Each query's values, in the same query order for every retriever (for paired comparisons).
    pub per_query: Vec<QueryMetrics>,
}

/// One query's metrics: at each cut-off of `SplitMetrics::at`, and its reciprocal rank.
#[derive(Debug, Clone, Serialize)]
pub struct QueryMetrics {
    pub at: Vec<metrics::AtK>,
    pub reciprocal_rank: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AtCutoff {
    pub k: usize,
    pub hit_rate: metrics::Estimate,
    pub recall: metrics::Estimate,
    pub ndcg: metrics::Estimate,
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrieverResult {
    pub name: String,
    pub splits: BTreeMap<String, SplitMetrics>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub catalogue: usize,
    /// Of `catalogue`, the items relevant to at least one chosen query (the rest are random).
    pub relevant_items: usize,
    pub queries: BTreeMap<String, usize>,
    pub retrievers: Vec<RetrieverResult>,
    /// A few queries' generated CoTs, side by side for every trained model that writes one.
    pub cot_examples: CotExamples,
    /// How every query's generated CoT ended, per row that writes one: (row, {ending: queries}).
    pub cot_endings: Vec<(String, BTreeMap<CotEnding, usize>)>,
}

fn endings(embedded: &[crate::lrem::QueryEmbedding]) -> BTreeMap<CotEnding, usize> {
    let mut counts = BTreeMap::new();
    for e in embedded {
        *counts.entry(e.ending).or_insert(0) += 1;
    }
    counts
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CotExamples {
    pub queries: Vec<String>,
    /// (model name, its CoT of each query), in --lrem order.
    pub models: Vec<(String, Vec<String>)>,
}

/// One retriever's row: each query's ranking of `catalogue` by its vector in `qv`.
pub fn score(
    name: &str,
    queries: &[JudgedQuery],
    qv: &[Vec<f32>],
    catalogue: &[(i64, Vec<f32>)],
    ks: &[usize],
    seconds: f64,
) -> Result<RetrieverResult> {
    // A NaN would sort first under `total_cmp` and score as a ranking: a broken model must fail.
    let bad_query = qv.iter().position(|v| v.iter().any(|x| !x.is_finite()));
    if let Some(i) = bad_query {
        return Err(err!("{name}: the embedding of query {:?} is not finite", queries[i].query));
    }
    if let Some((id, _)) = catalogue.iter().find(|(_, v)| v.iter().any(|x| !x.is_finite())) {
        return Err(err!("{name}: the embedding of item {id} is not finite"));
    }
    Ok(score_rankings(name, queries, |i| metrics::rank(&qv[i], catalogue), catalogue.len(), ks, seconds))
}

/// The ideal ranking's scores: each query's relevant items first, best grade first. Recall@K
/// divides by all relevant items, so this row is the ceiling every other row is read against.
fn ceiling(queries: &[JudgedQuery], catalogue: &[(i64, String)], ks: &[usize]) -> RetrieverResult {
    let ideal = |i: usize| {
        let relevant = &queries[i].relevant;
        let mut first: Vec<(i32, i64)> = relevant.iter().map(|(&id, &g)| (-g, id)).collect();
        first.sort_unstable();
        let rest = catalogue.iter().map(|(id, _)| *id).filter(|id| !relevant.contains_key(id));
        first.into_iter().map(|(_, id)| id).chain(rest).collect()
    };
    score_rankings(CEILING, queries, ideal, catalogue.len(), ks, 0.0)
}

/// The ceiling row's name.
pub const CEILING: &str = "ideal ranking (the ceiling)";

/// What MiniLM's oracle row appends to the query.
const ORACLE_EXPANSION: &str = "the need's product types (oracle)";

/// `query: type, type, …` for a hard query of the sample world; a head query as it is.
fn oracle_expansion(q: &JudgedQuery) -> String {
    if q.relevant_types.is_empty() { q.query.clone() } else { format!("{}: {}", q.query, q.relevant_types.join(", ")) }
}

/// The oracle-CoT row's label: the need's product types as the CoT, joined as the triples' CoTs
/// are (", "), the format the model was trained on.
pub const ORACLE_COT: &str = "oracle CoT (the need's product types)";

fn score_rankings(
    name: &str,
    queries: &[JudgedQuery],
    ranking_of: impl Fn(usize) -> Vec<i64>,
    n: usize,
    ks: &[usize],
    seconds: f64,
) -> RetrieverResult {
    let mut ks: Vec<usize> = ks.iter().map(|&k| k.min(n)).collect();
    ks.dedup();
    let mut splits = BTreeMap::new();
    for split in SPLITS {
        let chosen: Vec<usize> = (0..queries.len()).filter(|&i| in_split(&queries[i], split)).collect();
        if chosen.is_empty() {
            continue;
        }
        let per_query: Vec<QueryMetrics> = chosen
            .iter()
            .map(|&i| {
                let ranking = ranking_of(i);
                QueryMetrics {
                    at: ks.iter().map(|&k| metrics::at_k(&ranking, &queries[i].relevant, k)).collect(),
                    reciprocal_rank: metrics::reciprocal_rank(&ranking, &queries[i].relevant),
                }
            })
            .collect();
        let estimate = |f: &dyn Fn(&QueryMetrics) -> f64| {
            metrics::estimate(&per_query.iter().map(f).collect::<Vec<_>>(), metrics::RESAMPLES, split_seed(split))
        };
        let at = ks
            .iter()
            .enumerate()
            .map(|(j, &k)| AtCutoff {
                k,
                hit_rate: estimate(&|q| q.at[j].hit),
                recall: estimate(&|q| q.at[j].recall),
                ndcg: estimate(&|q| q.at[j].ndcg),
            })
            .collect();
        let mrr = estimate(&|q| q.reciprocal_rank);
        splits.insert(split.to_string(), SplitMetrics { queries: chosen.len(), at, mrr, per_query });
    }
    tracing::info!("  {name}: {:.1}s", seconds);
    RetrieverResult { name: name.to_string(), splits, seconds }
}

/// The bootstrap seed of a split: every retriever is resampled on the same draws of its queries,
/// so a difference between two rows can be resampled on them too (paired).
pub fn split_seed(split: &str) -> u64 {
    SPLITS.iter().position(|s| *s == split).unwrap_or(SPLITS.len()) as u64
}

/// The query groups reported, in report order.
pub const SPLITS: [&str; 6] =
    ["all", "head", "hard", "hard, unseen needs", "hard, unseen phrasings", "hard, validation needs"];

fn in_split(q: &JudgedQuery, split: &str) -> bool {
    match split {
        "all" => true,
        "hard, unseen needs" => q.holdout == Some(Holdout::UnseenNeed),
        "hard, unseen phrasings" => q.holdout == Some(Holdout::UnseenPhrasing),
        "hard, validation needs" => q.holdout == Some(Holdout::Validation),
        kind => q.kind == kind,
    }
}

/// Held-out judged queries, `per_kind` of each group, seeded.
fn choose_queries(spec: &EvalSpec) -> Result<Vec<JudgedQuery>> {
    let qrels_path = spec.data_dir.join("qrels.parquet");
    let mut all = inputs::read_qrels(&qrels_path)?;
    if let Some(needs) = &spec.needs {
        let mut hard = crate::holdout::read_hard_queries(needs, spec.holdout_seed)?;
        for q in &mut all {
            if let Some(h) = hard.remove(&q.query_id) {
                (q.holdout, q.relevant_types) = (Some(h.holdout), h.relevant_types);
            }
        }
    }
    let mut excluded = HashSet::new();
    for run in &spec.exclude_run {
        for split in [Split::ColdStart, Split::Rl] {
            excluded.extend(triples::read(run, split)?.into_iter().map(|t| t.query_id));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut chosen = Vec::new();
    // With the needs table, hard queries are only those evaluation holds out: never a phrasing
    // training or validation may see.
    let groups: &[&str] = if spec.validation {
        &["head", "hard, validation needs"]
    } else if spec.needs.is_some() {
        &["head", "hard, unseen needs", "hard, unseen phrasings"]
    } else {
        &["head", "hard"]
    };
    let cap = if spec.queries_per_kind == 0 { usize::MAX } else { spec.queries_per_kind };
    for group in groups {
        let mut pool: Vec<&JudgedQuery> =
            all.iter().filter(|q| in_split(q, group) && !excluded.contains(&q.query_id)).collect();
        pool.shuffle(&mut rng);
        chosen.extend(pool.into_iter().take(cap).cloned());
    }
    if chosen.is_empty() {
        return Err(err!("{}: no judged query left after holding out the training queries", qrels_path.display()));
    }
    Ok(chosen)
}

/// Every item relevant to a chosen query, plus `spec.catalogue` random others (all of them at 0);
/// also returns how many are relevant.
fn choose_catalogue(
    spec: &EvalSpec,
    items: &BTreeMap<i64, String>,
    queries: &[JudgedQuery],
) -> Result<(Vec<(i64, String)>, usize)> {
    let mut ids: BTreeSet<i64> = queries.iter().flat_map(|q| q.relevant.keys().copied()).collect();
    if let Some(missing) = ids.iter().find(|i| !items.contains_key(i)) {
        return Err(err!("qrels name item {missing}, which is not in items.parquet"));
    }
    let relevant = ids.len();
    if spec.catalogue == 0 {
        ids.extend(items.keys().copied());
    } else {
        let mut others: Vec<i64> = items.keys().copied().filter(|i| !ids.contains(i)).collect();
        others.shuffle(&mut ChaCha8Rng::seed_from_u64(spec.seed ^ 0xCA7A));
        ids.extend(others.into_iter().take(spec.catalogue));
    }
    Ok((ids.into_iter().map(|i| (i, items[&i].clone())).collect(), relevant))
}

/// Random keywords from the catalogue's words (the paper's random-CoT ablation).
fn random_cot(words: &[String], rng: &mut ChaCha8Rng) -> String {
    let n = rng.random_range(2..=6);
    (0..n).filter_map(|_| words.choose(rng).cloned()).collect::<Vec<_>>().join(", ")
}

pub fn run<B: Backend>(spec: &EvalSpec, out: &Path, device: &B::Device) -> Result<EvalResult> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let items = inputs::read_items(&spec.data_dir.join("items.parquet"))?;
    let queries = choose_queries(spec)?;
    let (catalogue, relevant_items) = choose_catalogue(spec, &items, &queries)?;
    let mut counts = BTreeMap::new();
    for q in &queries {
        *counts.entry(q.kind.clone()).or_insert(0) += 1;
    }
    tracing::info!(
        "eval: {} queries ({counts:?}), catalogue of {} items ({relevant_items} relevant)",
        queries.len(),
        catalogue.len()
    );
    let titles: Vec<&str> = catalogue.iter().map(|(_, t)| t.as_str()).collect();
    let texts: Vec<&str> = queries.iter().map(|q| q.query.as_str()).collect();
    let with_ids = |vectors: Vec<Vec<f32>>| catalogue.iter().map(|(i, _)| *i).zip(vectors).collect::<Vec<_>>();
    let mut results = vec![ceiling(&queries, &catalogue, &spec.ks)];
    // The CoT examples: hard queries first (what reasoning is for), then head ones.
    let mut shown: Vec<usize> = (0..queries.len()).filter(|&i| queries[i].kind != "head").take(6).collect();
    shown.extend((0..queries.len()).filter(|&i| queries[i].kind == "head").take(8 - shown.len()));
    let mut cot_examples =
        CotExamples { queries: shown.iter().map(|&i| queries[i].query.clone()).collect(), models: Vec::new() };
    let mut cot_endings = Vec::new();
    for (flag, study) in [("--budget-study", &spec.budget_study), ("--penalty-study", &spec.penalty_study)] {
        if let Some(name) = study
            && !spec.lrem.iter().any(|(n, _)| n == name)
        {
            return Err(err!("{flag} {name}: no --lrem model has that name"));
        }
    }

    if let Some(path) = &spec.minilm {
        let t = Instant::now();
        let encoder = SentenceEncoder::<B>::load(path, device)?;
        let iv = with_ids(normalised(encoder.embed(&titles)?));
        let qv = normalised(encoder.embed(&texts)?);
        let items_and_queries = t.elapsed().as_secs_f64();
        results.push(score("all-MiniLM-L6-v2 (direct)", &queries, &qv, &iv, &spec.ks, items_and_queries)?);
        if spec.oracle_cot {
            // The same words as a query expansion: how much of the oracle row any embedder gets.
            let t = Instant::now();
            let expanded: Vec<String> = queries.iter().map(oracle_expansion).collect();
            let qv = normalised(encoder.embed(&expanded.iter().map(String::as_str).collect::<Vec<_>>())?);
            let row = format!("all-MiniLM-L6-v2, query + {}", ORACLE_EXPANSION);
            results.push(score(&row, &queries, &qv, &iv, &spec.ks, items_and_queries + t.elapsed().as_secs_f64())?);
        }
    }
    if let Some(path) = &spec.base {
        let t = Instant::now();
        let lm = LanguageModel::<B>::load(path, device)?;
        let p = Prompting { tokenizer: &lm.tokenizer, system_prompt: Some(String::new()) };
        let iseq = titles.iter().map(|t| p.plain_sequence(&format!("Item: {t}"))).collect::<Result<Vec<_>>>()?;
        let qseq = texts.iter().map(|q| p.plain_sequence(q)).collect::<Result<Vec<_>>>()?;
        let iv = with_ids(pool_last(&lm.model, &iseq, spec.batch));
        let qv = pool_last(&lm.model, &qseq, spec.batch);
        results.push(score("base decoder, last token", &queries, &qv, &iv, &spec.ks, t.elapsed().as_secs_f64())?);
        // The same decoder in the LREM format before any step (chat template, `<think>…</think>
        // <emb>`, the new tokens' rows started as the cold start starts them), with the trained
        // models' settings: what the format does, apart from what training does.
        let mut settings = match spec.lrem.first() {
            Some((_, dir)) => LremSettings::read(dir)?,
            None => LremSettings { system_prompt: Some(String::new()), ..Default::default() },
        };
        if let Some(p) = spec.cot_penalties {
            settings.cot_penalties = p;
        }
        let t = Instant::now();
        let model = LremModel::new(lm.add_lrem_tokens(), settings)?;
        let iv = with_ids(model.embed_items(&titles, spec.batch)?);
        let items_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let embedded = model.embed_queries(&texts, spec.cot_max_tokens, spec.batch)?;
        let row = "base decoder, LREM format, generated CoT";
        cot_endings.push((row.to_string(), endings(&embedded)));
        let qv: Vec<Vec<f32>> = embedded.into_iter().map(|e| e.vector).collect();
        let seconds = items_seconds + t.elapsed().as_secs_f64();
        results.push(score(row, &queries, &qv, &iv, &spec.ks, seconds)?);
        let t = Instant::now();
        let empty: Vec<(&str, String)> = texts.iter().map(|&q| (q, String::new())).collect();
        let qv = model.embed_queries_with_cot(&empty, spec.batch)?;
        let seconds = items_seconds + t.elapsed().as_secs_f64();
        results.push(score("base decoder, LREM format, empty CoT", &queries, &qv, &iv, &spec.ks, seconds)?);
    }
    let words: Vec<String> = {
        let set: BTreeSet<String> = titles
            .iter()
            .flat_map(|t| t.split_whitespace())
            .filter(|w| w.chars().all(char::is_alphabetic) && w.len() > 2)
            .map(str::to_lowercase)
            .collect();
        set.into_iter().collect()
    };
    let mut first_cot_model = true;
    for (name, dir) in &spec.lrem {
        let t = Instant::now();
        let mut model = LremModel::<B>::load(dir, device)?;
        if let Some(p) = spec.cot_penalties {
            model.settings.cot_penalties = p;
        }
        let iv = with_ids(model.embed_items(&titles, spec.batch)?);
        if model.settings.direct {
            // A direct embedder has no CoT to generate or ablate.
            let qv: Vec<Vec<f32>> = model.embed_queries(&texts, 0, spec.batch)?.into_iter().map(|e| e.vector).collect();
            results.push(score(name, &queries, &qv, &iv, &spec.ks, t.elapsed().as_secs_f64())?);
            continue;
        }
        let items_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let embedded = model.embed_queries(&texts, spec.cot_max_tokens, spec.batch)?;
        cot_examples.models.push((name.clone(), shown.iter().map(|&i| embedded[i].cot.clone()).collect()));
        cot_endings.push((format!("{name}, generated CoT"), endings(&embedded)));
        let qv: Vec<Vec<f32>> = embedded.into_iter().map(|e| e.vector).collect();
        let seconds = items_seconds + t.elapsed().as_secs_f64();
        if spec.budget_study.as_ref() == Some(name) {
            for &budget in &spec.budgets {
                let row = format!("{name}, CoT budget {budget}");
                if budget == spec.cot_max_tokens {
                    results.push(score(&row, &queries, &qv, &iv, &spec.ks, seconds)?);
                    continue;
                }
                let t = Instant::now();
                let embedded = model.embed_queries(&texts, budget, spec.batch)?;
                cot_endings.push((row.clone(), endings(&embedded)));
                let qv: Vec<Vec<f32>> = embedded.into_iter().map(|e| e.vector).collect();
                results.push(score(&row, &queries, &qv, &iv, &spec.ks, items_seconds + t.elapsed().as_secs_f64())?);
            }
        }
        results.push(score(&format!("{name}, generated CoT"), &queries, &qv, &iv, &spec.ks, seconds)?);
        if spec.penalty_study.as_ref() == Some(name) {
            let own = model.settings.cot_penalties;
            for &p in spec.penalty_settings.iter().filter(|&&p| p != own) {
                let t = Instant::now();
                model.settings.cot_penalties = p;
                let embedded = model.embed_queries(&texts, spec.cot_max_tokens, spec.batch)?;
                let row = format!("{name}, generated CoT, penalties {p}");
                cot_examples.models.push((row.clone(), shown.iter().map(|&i| embedded[i].cot.clone()).collect()));
                cot_endings.push((row.clone(), endings(&embedded)));
                let qv: Vec<Vec<f32>> = embedded.into_iter().map(|e| e.vector).collect();
                results.push(score(&row, &queries, &qv, &iv, &spec.ks, items_seconds + t.elapsed().as_secs_f64())?);
            }
            model.settings.cot_penalties = own;
        }
        if !std::mem::replace(&mut first_cot_model, false) {
            continue;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0xC07);
        let mut ablations = vec!["empty CoT", "random CoT", "query as CoT"];
        if spec.oracle_cot {
            ablations.push(ORACLE_COT);
        }
        for label in ablations {
            let t = Instant::now();
            let with_cot: Vec<(&str, String)> = texts
                .iter()
                .enumerate()
                .map(|(i, &q)| {
                    let c = match label {
                        "empty CoT" => String::new(),
                        "random CoT" => random_cot(&words, &mut rng),
                        "query as CoT" => q.to_string(),
                        _ => queries[i].relevant_types.join(", "),
                    };
                    (q, c)
                })
                .collect();
            let qv = model.embed_queries_with_cot(&with_cot, spec.batch)?;
            results.push(score(
                &format!("{name}, {label}"),
                &queries,
                &qv,
                &iv,
                &spec.ks,
                items_seconds + t.elapsed().as_secs_f64(),
            )?);
        }
    }
    let result = EvalResult {
        catalogue: catalogue.len(),
        relevant_items,
        queries: counts,
        retrievers: results,
        cot_examples,
        cot_endings,
    };
    std::fs::write(out.join("eval.json"), serde_json::to_vec_pretty(&result)?)?;
    report::write(&result, spec, out)?;
    Ok(result)
}
