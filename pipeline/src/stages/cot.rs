//! Stage `cot`: the extracted keywords post-processed into the chain of thought (see
//! [`super::cot_rules`]). A query left with no keyword is filtered: `prompt_echo` when every
//! keyword was copied from the prompt, `no_keyword_left` otherwise.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::Schema;
use lrem_schemas::config::PipelineConfig;
use serde_json::json;

use super::columns::{string_list_array, string_lists, strings, u64s};
use super::cot_rules::{Dropped, Rules, normalize_keyword, postprocess, template_words};
use super::prompts::Prompts;
use super::stage::{Counts, StageCtx};
use super::streaming::{Rows, Streaming, UnitResult};
use crate::Error;

pub struct Cot;

pub struct Extracted {
    query_id: u64,
    query: String,
    keywords: Vec<String>,
}

pub struct CotRow {
    query_id: u64,
    query: String,
    keywords: Vec<String>,
    dropped: i32,
}

pub struct PostProcess {
    rules: Rules,
    /// Every query's drops, summed for the closing line.
    dropped: Mutex<Dropped>,
}

impl Streaming for Cot {
    const NAME: &'static str = "cot";
    const UPSTREAM: &'static [&'static str] = &["keywords"];
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/cot.sql");
    const UNITS_PER_PART: usize = 4096;
    type Input = Extracted;
    type Output = CotRow;
    type State = PostProcess;

    // The prompts' own words are what `prompt_echo` drops.
    fn settings(config: &PipelineConfig, prompts: &Prompts) -> serde_json::Value {
        json!({
            "cot": config.stages.cot, "templates": [&prompts.reasoning, &prompts.keywords, &prompts.keywords_repair],
        })
    }

    fn read(batch: &RecordBatch) -> Result<Vec<Extracted>, Error> {
        let (ids, queries, keywords) =
            (u64s(batch, "query_id")?, strings(batch, "query")?, string_lists(batch, "keywords")?);
        let rows = ids.into_iter().zip(queries).zip(keywords);
        Ok(rows.map(|((query_id, query), keywords)| Extracted { query_id, query, keywords }).collect())
    }

    async fn prepare(ctx: &StageCtx) -> Result<PostProcess, Error> {
        let settings = &ctx.config.stages.cot;
        let banned: HashSet<String> = settings.banned.iter().map(|b| normalize_keyword(b)).collect();
        let p = &ctx.prompts;
        let template_words = template_words([&p.reasoning, &p.keywords, &p.keywords_repair].map(String::as_str));
        let rules = Rules { banned, template_words, max_keywords: settings.max_keywords as usize };
        Ok(PostProcess { rules, dropped: Mutex::new(Dropped::default()) })
    }

    async fn process(state: &PostProcess, unit: Vec<Extracted>) -> Result<UnitResult<CotRow>, Error> {
        let mut result = UnitResult::new(unit.len() as u64);
        for Extracted { query_id, query, keywords } in unit {
            let (kept, dropped) = postprocess(&query, &keywords, &state.rules);
            state.dropped.lock().unwrap().add(&dropped);
            if kept.is_empty() && dropped.prompt_echo == dropped.total() {
                result.filter("prompt_echo");
            } else if kept.is_empty() {
                result.filter("no_keyword_left");
            } else {
                result.passed += 1;
                result.rows.push(CotRow { query_id, query, keywords: kept, dropped: dropped.total() as i32 });
            }
        }
        Ok(result)
    }

    fn summary(state: PostProcess, counts: &Counts) -> String {
        // One summary, for the log (no terminal) and the progress bar (a terminal).
        let dropped = state.dropped.into_inner().unwrap();
        tracing::info!(%dropped, "cot: keywords dropped");
        let left_without = counts.filtered.values().sum::<u64>();
        format!("{} CoTs, {left_without} left without keywords; keywords dropped: {dropped}", counts.rows_out)
    }
}

impl Rows for CotRow {
    fn columns(rows: &[Self], schema: &Schema) -> Result<Vec<(&'static str, ArrayRef)>, Error> {
        Ok(vec![
            ("query_id", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id)))),
            ("query", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.query)))),
            ("keywords", string_list_array(schema, "keywords", rows.iter().map(|r| &r.keywords))?),
            ("cot", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.keywords.join(", "))))),
            ("dropped", Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.dropped)))),
        ])
    }
}
