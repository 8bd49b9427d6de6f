//! Stage `cot`: the extracted keywords post-processed into the chain of thought (see
//! [`super::cot_rules`]). A query left with no keyword is filtered: `prompt_echo` when every
//! keyword was copied from the prompt, `no_keyword_left` otherwise.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt64Array};

use super::columns::{string_list_array, string_lists, strings, u64s};
use super::cot_rules::{Dropped, Rules, normalize_keyword, postprocess, template_words};
use super::parts::{PartSink, UnitResult, run_parts};
use super::{Counts, StageCtx, rows};
use crate::Error;

struct CotRow {
    query_id: u64,
    query: String,
    keywords: Vec<String>,
    dropped: i32,
}

pub async fn cot(ctx: &StageCtx) -> Result<Counts, Error> {
    let settings = ctx.config.stages.cot.clone();
    let banned: HashSet<String> = settings.banned.iter().map(|b| normalize_keyword(b)).collect();
    let p = &ctx.prompts;
    let template_words = template_words([&p.reasoning, &p.keywords, &p.keywords_repair].map(String::as_str));
    let rules = Rules { banned, template_words, max_keywords: settings.max_keywords as usize };
    let all_dropped = std::sync::Mutex::new(Dropped::default());
    let only = ctx.shard_filter("k.query_id");
    let total = super::count_rows(ctx, &format!("select count(*) from keywords k where {only}")).await?;
    let bar = ctx.progress.stage("cot", total);
    let sql = format!(
        "select k.query_id, r.query, k.keywords from keywords k join reasoning r on r.query_id = k.query_id \
         where {only} order by k.query_id"
    );
    let input = rows(ctx, &sql, |b| {
        let (ids, queries, keywords) = (u64s(b, "query_id")?, strings(b, "query")?, string_lists(b, "keywords")?);
        Ok(ids.into_iter().zip(queries).zip(keywords).map(|((i, q), k)| (i, q, k)).collect::<Vec<_>>())
    })
    .await?;
    let sink = PartSink::new(ctx, "cot", "cot")?;
    let process = |(query_id, query, keywords): (u64, String, Vec<String>)| {
        let (rules, all_dropped) = (&rules, &all_dropped);
        async move {
            let mut result = UnitResult::new(1);
            let (kept, dropped) = postprocess(&query, &keywords, rules);
            all_dropped.lock().unwrap().add(&dropped);
            if kept.is_empty() && dropped.prompt_echo == dropped.total() {
                result.filter("prompt_echo");
            } else if kept.is_empty() {
                result.filter("no_keyword_left");
            } else {
                result.passed = 1;
                result.rows.push(CotRow { query_id, query, keywords: kept, dropped: dropped.total() as i32 });
            }
            Ok(result)
        }
    };
    let to_batch = |rows: &[CotRow]| {
        let keywords = string_list_array(&sink.schema, "keywords", rows.iter().map(|r| &r.keywords))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.query_id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.query))),
            keywords,
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.keywords.join(", ")))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.dropped))),
        ];
        Ok(RecordBatch::try_new(sink.schema.clone(), columns)?)
    };
    let counts = run_parts(&sink, input, 4096, 64, process, to_batch, |c| bar.update(c.rows_in, None)).await?;
    // One summary, for the log (no terminal) and the progress bar (a terminal).
    let dropped = all_dropped.into_inner().unwrap();
    tracing::info!(%dropped, "cot: keywords dropped");
    let left_without = counts.filtered.values().sum::<u64>();
    bar.finish(format!("{} CoTs, {left_without} left without keywords; keywords dropped: {dropped}", counts.rows_out));
    Ok(counts)
}
