//! The evaluation report: Markdown tables per query split and a bar chart of Recall@10.

use std::fmt::Write;
use std::path::Path;

use super::{EvalResult, EvalSpec, QueryMetrics, metrics};
use crate::error::Result;
use crate::lrem::CotEnding;
use crate::plot::grouped_bars;

pub fn write(result: &EvalResult, spec: &EvalSpec, out: &Path) -> Result<()> {
    let mut md = String::new();
    writeln!(md, "# Retrieval evaluation\n")?;
    if spec.validation {
        writeln!(
            md,
            "**Validation report**: the hard queries are the validation needs' phrasings, for choosing a \
             schedule; it says nothing about held-out needs.\n"
        )?;
    }
    writeln!(
        md,
        "{} held-out judged queries ({}), exact top-K over a catalogue of {} items ({} relevant to those \
         queries, {} other items drawn with seed {}). Relevance from `qrels` (grade > 0); Recall@K is the share \
         of a query's relevant items in its top K (at most K / relevant); NDCG gain 2^grade − 1; MRR over the \
         whole ranking. K is capped at the catalogue size. Each value is a mean over queries with its 95% \
         bootstrap interval ({} resamples of the queries; the same draws for every retriever).\n",
        result.queries.values().sum::<usize>(),
        result.queries.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        result.catalogue,
        result.relevant_items,
        result.catalogue - result.relevant_items,
        spec.seed,
        crate::eval::metrics::RESAMPLES
    )?;
    if spec.oracle_cot {
        writeln!(
            md,
            "The row \"{}\" gives each hard query its need's product types as the CoT (what the reference \
             teacher answers) and each head query an empty one: a bound on what a right CoT does for this \
             embedding, never a retriever. MiniLM's oracle row embeds the query followed by the same words \
             (a query expansion): how much of that bound any embedder would get from them.\n",
            super::ORACLE_COT
        )?;
    }
    for split in super::SPLITS {
        let Some(first) = result.retrievers.iter().find_map(|r| r.splits.get(split)) else { continue };
        writeln!(md, "## {split} queries ({})\n", first.queries)?;
        let mut header = String::from("| retriever |");
        let mut rule = String::from("|---|");
        for a in &first.at {
            let k = a.k;
            write!(header, " HR@{k} | R@{k} | NDCG@{k} |")?;
            rule.push_str("---:|---:|---:|");
        }
        writeln!(md, "{header} MRR | seconds (items + queries) |\n{rule}---:|---:|")?;
        for r in &result.retrievers {
            let Some(m) = r.splits.get(split) else { continue };
            let cells: String =
                m.at.iter()
                    .map(|a| format!(" {} | {} | {} |", cell(a.hit_rate), cell(a.recall), cell(a.ndcg)))
                    .collect();
            writeln!(md, "| {} |{cells} {} | {:.0} |", r.name, cell(m.mrr), r.seconds)?;
        }
        writeln!(md)?;
    }
    paired_differences(&mut md, result)?;
    let examples = &result.cot_examples;
    if !examples.models.is_empty() {
        // A row's own penalties are in its name; --cot-penalties, when given, is every other row's.
        let penalties =
            spec.cot_penalties.map_or("each model's own penalties".to_string(), |p| format!("penalties {p}"));
        writeln!(md, "## Generated CoTs, side by side (greedy, ≤ {} tokens, {penalties})\n", spec.cot_max_tokens)?;
        let names: Vec<String> = examples.models.iter().map(|(n, _)| escape(n)).collect();
        writeln!(md, "| query | {} |\n|---|{}", names.join(" | "), "---|".repeat(names.len()))?;
        for (i, q) in examples.queries.iter().enumerate() {
            let cots: Vec<String> = examples.models.iter().map(|(_, c)| escape(&c[i])).collect();
            writeln!(md, "| {} | {} |", escape(q), cots.join(" | "))?;
        }
        writeln!(md)?;
    }
    if !result.cot_endings.is_empty() {
        writeln!(md, "## How the generated CoTs ended\n")?;
        writeln!(
            md,
            "Queries whose greedy CoT stopped on each token. Any of them closes the CoT for the embedding; \
             only `</think>` is the format RL's reward asks for (`<|im_end|>` is the chat template's end of turn).\n"
        )?;
        writeln!(md, "| row | `</think>` | `<emb>` | end of turn | budget |\n|---|---:|---:|---:|---:|")?;
        for (row, counts) in &result.cot_endings {
            let n = |e: CotEnding| counts.get(&e).copied().unwrap_or(0);
            writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                escape(row),
                n(CotEnding::Closed),
                n(CotEnding::Emb),
                n(CotEnding::EndOfTurn),
                n(CotEnding::Budget)
            )?;
        }
        writeln!(md)?;
    }
    writeln!(md, "![Recall@10 by retriever](recall.svg)")?;
    std::fs::write(out.join("report.md"), md)?;

    let groups: Vec<String> = result.retrievers.iter().map(|r| r.name.clone()).collect();
    let series: Vec<(String, Vec<f64>)> = ["head", "hard", "all"]
        .iter()
        .map(|s| {
            let values = result
                .retrievers
                .iter()
                .map(|r| r.splits.get(*s).and_then(|m| m.at.first()).map_or(0.0, |a| a.recall.mean))
                .collect();
            (format!("{s} queries"), values)
        })
        .collect();
    let k = result.retrievers.first().and_then(|r| r.splits.get("all")).and_then(|m| m.at.first()).map_or(10, |a| a.k);
    grouped_bars(&out.join("recall.svg"), &format!("Recall@{k}"), &groups, &series)
}

/// A table cell's text: pipes escaped, line breaks as spaces.
fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Every row minus the first retriever after the ceiling (MiniLM when it is given), per query,
/// resampled on the split's own draws: the interval of the difference itself.
fn paired_differences(md: &mut String, result: &EvalResult) -> Result<()> {
    let mut rows = result.retrievers.iter().filter(|r| r.name != super::CEILING);
    let Some(reference) = rows.next() else { return Ok(()) };
    let others: Vec<_> = rows.collect();
    if others.is_empty() {
        return Ok(());
    }
    writeln!(md, "## Paired differences against {}\n", reference.name)?;
    writeln!(
        md,
        "Each row minus {} on the same queries, with the 95% interval of the difference from the same \
         bootstrap draws. An interval that excludes 0 (marked *) is a difference these queries show; \
         intervals that overlap in the tables above do not rule one out.\n",
        reference.name
    )?;
    for split in super::SPLITS.into_iter().filter(|s| *s != "all") {
        let Some(base) = reference.splits.get(split) else { continue };
        writeln!(md, "### {split} queries ({})\n", base.queries)?;
        let mut header = String::from("| retriever |");
        for a in &base.at {
            write!(header, " ΔHR@{k} | ΔR@{k} |", k = a.k)?;
        }
        writeln!(md, "{header} ΔMRR |\n|---|{}---:|", "---:|---:|".repeat(base.at.len()))?;
        for r in &others {
            let Some(m) = r.splits.get(split) else { continue };
            assert_eq!(m.per_query.len(), base.per_query.len(), "{split}: every row ranks the same queries");
            let diff = |f: &dyn Fn(&QueryMetrics) -> f64| {
                let d: Vec<f64> = m.per_query.iter().zip(&base.per_query).map(|(a, b)| f(a) - f(b)).collect();
                delta_cell(metrics::estimate(&d, metrics::RESAMPLES, super::split_seed(split)))
            };
            let cells: String = (0..base.at.len())
                .map(|j| format!(" {} | {} |", diff(&|q| q.at[j].hit), diff(&|q| q.at[j].recall)))
                .collect();
            writeln!(md, "| {} |{cells} {} |", r.name, diff(&|q| q.reciprocal_rank))?;
        }
        writeln!(md)?;
    }
    Ok(())
}

/// `+0.012 [-0.03, +0.05]`: a difference and its interval, ` *` where the interval excludes 0.
fn delta_cell(e: metrics::Estimate) -> String {
    let shown = if e.low > 0.0 || e.high < 0.0 { " *" } else { "" };
    format!("{:+.3} [{:+.2}, {:+.2}]{shown}", e.mean + 0.0, e.low + 0.0, e.high + 0.0)
}

/// `0.543 [0.49, 0.60]`: the mean and its interval.
fn cell(e: metrics::Estimate) -> String {
    // + 0.0: a float sum starts at −0.0, and a mean of zeros would print as "-0.00".
    format!("{:.3} [{:.2}, {:.2}]", e.mean + 0.0, e.low + 0.0, e.high + 0.0)
}
