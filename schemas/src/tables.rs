//! The Arrow schema of every table in the DAG, with one doc line per column.
//!
//! Inputs are what a user brings (`items`, `query_log`; the sample world adds `qrels`). Stage tables
//! are what `lrem-pipeline run` writes under `tables/<name>/` of a run directory. The trainer reads
//! `triples_cold_start` / `triples_rl` through these same definitions.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Whether a table is brought by the user or produced by a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Read from the user's files (`items`, `query_log`) or the sample world (`qrels`).
    Input,
    /// Written by one pipeline stage into the run directory.
    Stage,
    /// Kept by the runner itself (the response cache), shown as a table by `lrem-pipeline sql`.
    Run,
}

/// One column: name, Arrow type, nullability and what it means.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    pub data_type: DataType,
    pub nullable: bool,
    pub doc: &'static str,
}

/// One table of the DAG.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: &'static str,
    pub kind: TableKind,
    pub doc: &'static str,
    pub columns: Vec<Column>,
    /// Columns whose combined value must be unique (empty: no key).
    pub unique_key: &'static [&'static str],
}

impl TableSpec {
    /// The Arrow schema, with each column's doc kept as field metadata (`doc`).
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                Field::new(c.name, c.data_type.clone(), c.nullable)
                    .with_metadata([("doc".to_string(), c.doc.to_string())].into())
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Counts an input's rows must respect: columns that are never negative, and (part, whole)
    /// pairs where the part never exceeds the whole. A log that breaks them (a CTR above 1) is
    /// reported by validation like any other problem.
    pub fn count_rules(&self) -> CountRules {
        match self.name {
            "query_log" => CountRules {
                non_negative: &["impressions", "clicks", "orders"],
                at_most: &[("clicks", "impressions"), ("orders", "impressions")],
            },
            _ => CountRules { non_negative: &[], at_most: &[] },
        }
    }

    /// Inputs of the sample world's ground truth (`qrels`, `needs`): a user's own run has neither.
    pub fn is_optional_input(&self) -> bool {
        self.kind == TableKind::Input && matches!(self.name, "qrels" | "needs")
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Markdown section documenting the table (docs/tables.md; a test keeps them equal).
    pub fn markdown(&self) -> String {
        let mut out =
            format!("#### `{}`\n{}\n\n| column | type | null | meaning |\n|---|---|---|---|\n", self.name, self.doc);
        for c in &self.columns {
            let null = if c.nullable { "yes" } else { "no" };
            let key = if self.unique_key.contains(&c.name) { " (key)" } else { "" };
            out.push_str(&format!("| `{}`{key} | {} | {null} | {} |\n", c.name, type_name(&c.data_type), c.doc));
        }
        out
    }
}

/// See [`TableSpec::count_rules`].
#[derive(Debug, Clone, Copy)]
pub struct CountRules {
    pub non_negative: &'static [&'static str],
    pub at_most: &'static [(&'static str, &'static str)],
}

/// Short human name of an Arrow type, as written in docs and error messages.
pub fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Boolean => "bool".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("list<{}>", type_name(f.data_type())),
        other => format!("{other}"),
    }
}

fn col(name: &'static str, data_type: DataType, nullable: bool, doc: &'static str) -> Column {
    Column { name, data_type, nullable, doc }
}

fn list_of(t: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", t, false)))
}

fn query_id() -> Column {
    col("query_id", DataType::UInt64, false, "Stable hash of the normalised query text (`lrem_schemas::query_id`).")
}
fn item_id(doc: &'static str) -> Column {
    col("item_id", DataType::Int64, false, doc)
}
fn query_text() -> Column {
    col("query", DataType::Utf8, false, "Query text, normalised (NFKC, case-folded, whitespace collapsed).")
}

fn retrieval(name: &'static str, doc: &'static str) -> TableSpec {
    TableSpec {
        name,
        kind: TableKind::Stage,
        doc,
        columns: vec![
            query_id(),
            item_id("Retrieved item."),
            col("rank", DataType::Int32, false, "1-based rank of the item for this query."),
            col("score", DataType::Float32, false, "Cosine similarity between query and item embeddings."),
        ],
        unique_key: &["query_id", "item_id"],
    }
}

fn triples(name: &'static str, doc: &'static str) -> TableSpec {
    TableSpec {
        name,
        kind: TableKind::Stage,
        doc,
        columns: vec![
            query_id(),
            query_text(),
            col("cot", DataType::Utf8, false, "Chain of thought: the kept keywords joined by \", \" (at most 16)."),
            item_id("Positive item gained through the CoT."),
            col("title", DataType::Utf8, false, "Title of the positive item."),
            col("relevance", DataType::Float32, false, "Relevance score that let the pair through."),
        ],
        unique_key: &["query_id", "item_id"],
    }
}

/// Every table, in DAG order: inputs first, then stages as they run.
pub fn all_tables() -> Vec<TableSpec> {
    use DataType::*;
    vec![
        TableSpec {
            name: "items",
            kind: TableKind::Input,
            doc: "The item catalogue.",
            columns: vec![
                item_id("Catalogue identifier of the item."),
                col("title", Utf8, false, "Item title as shown to shoppers."),
                col(
                    "category_path",
                    Utf8,
                    true,
                    "Category path, levels separated by \" > \" (optional: no stage reads it).",
                ),
                col("brand", Utf8, true, "Brand name."),
                col("price", Float64, true, "Price in the shop's currency."),
            ],
            unique_key: &["item_id"],
        },
        TableSpec {
            name: "query_log",
            kind: TableKind::Input,
            doc: "Search log aggregated per (query, item, day).",
            columns: vec![
                col("query", Utf8, false, "Query text as typed (normalised by the `queries` stage)."),
                item_id("Item shown for the query."),
                col("day", Date32, false, "Day of the impressions."),
                col("impressions", Int64, false, "Times the item was shown for the query that day (≥ 0)."),
                col("clicks", Int64, false, "Clicks on the item from that query that day (0 to impressions)."),
                col("orders", Int64, false, "Orders of the item that followed the query that day (0 to impressions)."),
            ],
            unique_key: &["query", "item_id", "day"],
        },
        TableSpec {
            name: "qrels",
            kind: TableKind::Input,
            doc: "Ground-truth relevance of the sample world (for evaluation; not read by the pipeline).",
            columns: vec![
                query_id(),
                col("query", Utf8, false, "Query text as it appears in the query log."),
                col("query_kind", Utf8, false, "`head` (names the product) or `hard` (needs reasoning)."),
                col(
                    "pattern",
                    Utf8,
                    true,
                    "For hard queries: comparative, use_case, problem_solution, negation or implicit_attribute.",
                ),
                item_id("Relevant item."),
                col("grade", Int32, false, "Graded relevance: 3 exact, 2 good, 1 partial."),
            ],
            unique_key: &["query_id", "item_id"],
        },
        TableSpec {
            name: "needs",
            kind: TableKind::Input,
            doc: "The sample world's hard queries and the shopper need each one phrases: what evaluation held out by need splits on (`lrem_schemas::holdout`; not read by the pipeline).",
            columns: vec![
                query_id(),
                col("query", Utf8, false, "Query text as it appears in the query log."),
                col("need_id", Int32, false, "The need, by its position in world.toml."),
                col("phrasing", Int32, false, "Which of the need's phrasings this query is (0, 1, 2)."),
                col("pattern", Utf8, false, "comparative, use_case, problem_solution, negation or implicit_attribute."),
                col(
                    "relevant_types",
                    list_of(Utf8),
                    false,
                    "The product types the need calls for (world.toml's `relevant`, `{attribute} {type}` where restricted): what the reference teacher answers; evaluation's oracle-CoT bound.",
                ),
            ],
            unique_key: &["query_id"],
        },
        TableSpec {
            name: "queries",
            kind: TableKind::Stage,
            doc: "The query log aggregated per normalised query.",
            columns: vec![
                query_id(),
                query_text(),
                col("days", Int64, false, "Distinct days on which the query was logged."),
                col("impressions", Int64, false, "Total impressions."),
                col("clicks", Int64, false, "Total clicks."),
                col("orders", Int64, false, "Total orders."),
                col("ctr", Float64, false, "clicks / impressions."),
                col(
                    "engaged_items",
                    list_of(Int64),
                    false,
                    "Items with at least one click or order, most engaged first.",
                ),
            ],
            unique_key: &["query_id"],
        },
        TableSpec {
            name: "item_embeddings",
            kind: TableKind::Stage,
            doc: "Direct embedding of every item title by the existing retriever.",
            columns: vec![
                item_id("Embedded item."),
                col(
                    "embedding",
                    list_of(Float32),
                    false,
                    "L2-normalised embedding (dimension set by the embedding model).",
                ),
            ],
            unique_key: &["item_id"],
        },
        retrieval("retrieval_1", "Set ①: top-K items per query from the existing retriever on the raw query."),
        TableSpec {
            name: "hard_queries",
            kind: TableKind::Stage,
            doc: "Mined hard queries: frequent, low CTR, with engaged items that set ① misses.",
            columns: vec![
                query_id(),
                query_text(),
                col("impressions", Int64, false, "Total impressions."),
                col("clicks", Int64, false, "Total clicks."),
                col("ctr", Float64, false, "clicks / impressions."),
                col("engaged_items", Int64, false, "Number of engaged items."),
                col("missed_items", list_of(Int64), false, "Engaged items absent from set ① at K."),
                col("missed_share", Float64, false, "missed / engaged."),
                col("pattern", Utf8, true, "Pattern prior that matched the query text, if any."),
            ],
            unique_key: &["query_id"],
        },
        TableSpec {
            name: "reasoning",
            kind: TableKind::Stage,
            doc: "Unconstrained chain of thought written by the reasoner model for each hard query.",
            columns: vec![
                query_id(),
                query_text(),
                col("reasoning", Utf8, false, "The reasoner's reply text."),
                col("finish_reason", Utf8, false, "`stop` or `length`, as the endpoint reported it."),
                col("prompt_tokens", Int64, false, "Prompt tokens reported by the endpoint."),
                col("completion_tokens", Int64, false, "Completion tokens reported by the endpoint."),
            ],
            unique_key: &["query_id"],
        },
        TableSpec {
            name: "keywords",
            kind: TableKind::Stage,
            doc: "Keywords extracted from query + reasoning by the extractor model (a JSON list).",
            columns: vec![
                query_id(),
                query_text(),
                col(
                    "keywords",
                    list_of(Utf8),
                    false,
                    "Keywords as the model returned them (never empty: empty replies go to failures).",
                ),
                col("reply", Utf8, false, "Raw reply text that was parsed."),
                col("parse", Utf8, false, "How the reply parsed: `json`, `tolerant` or `repaired`."),
                col("attempts", Int32, false, "Requests spent, repair prompts included."),
            ],
            unique_key: &["query_id"],
        },
        TableSpec {
            name: "cot",
            kind: TableKind::Stage,
            doc: "Post-processed keywords: normalised, deduplicated, degenerate ones, query words, prompt echoes and banned terms dropped, at most 16.",
            columns: vec![
                query_id(),
                query_text(),
                col("keywords", list_of(Utf8), false, "Kept keywords, in the model's order."),
                col("cot", Utf8, false, "Kept keywords joined by \", \"."),
                col(
                    "dropped",
                    Int32,
                    false,
                    "Keywords dropped (degenerate, duplicate, only query words, only the prompt's own words, banned, or over the limit).",
                ),
            ],
            unique_key: &["query_id"],
        },
        retrieval("retrieval_2", "Set ②: top-K items per query from the existing retriever on \"query + CoT\"."),
        TableSpec {
            name: "gain",
            kind: TableKind::Stage,
            doc: "Set ② minus set ①: items the CoT brought in.",
            columns: vec![
                query_id(),
                item_id("Item in ② and not in ①."),
                col("rank", DataType::Int32, false, "Rank in set ②."),
                col("score", DataType::Float32, false, "Score in set ②."),
            ],
            unique_key: &["query_id", "item_id"],
        },
        TableSpec {
            name: "relevance",
            kind: TableKind::Stage,
            doc: "Relevance of every gain pair; `relevant` pairs become triples.",
            columns: vec![
                query_id(),
                item_id("Scored item."),
                col("score", Float32, false, "Relevance score in [0, 1] (judge probability, rerank score or cosine)."),
                col("relevant", Boolean, false, "score >= the configured threshold."),
                col("method", Utf8, false, "`judge`, `rerank` or `similarity`."),
            ],
            unique_key: &["query_id", "item_id"],
        },
        triples("triples", "All <query, CoT, item> training triples."),
        triples("triples_cold_start", "Triples of the cold-start split (split by query_id, never by row)."),
        triples("triples_rl", "Triples of the RL split (split by query_id, never by row)."),
        TableSpec {
            name: "failures",
            kind: TableKind::Stage,
            doc: "Every row that failed for good, after retries.",
            columns: vec![
                col("stage", Utf8, false, "Stage the row failed in."),
                col("key", Utf8, false, "The row's key (query_id or item_id)."),
                col("error_kind", Utf8, false, "Failure class, e.g. `http_429`, `timeout`, `unparsable_keywords`."),
                col("message", Utf8, false, "Last error message (secrets redacted)."),
                col("attempts", Int32, false, "Attempts made."),
                col(
                    "failed_at",
                    Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                    false,
                    "When the row was given up.",
                ),
            ],
            unique_key: &[],
        },
    ]
}

/// The response cache of a run (`cache.redb`), as `lrem-pipeline sql --run` shows it.
pub fn cache_table() -> TableSpec {
    use DataType::*;
    TableSpec {
        name: "cache",
        kind: TableKind::Run,
        doc: "Every model response of the run, keyed by the request that produced it.",
        columns: vec![
            col("key", Utf8, false, "XXH3-128 of (endpoint kind, model, canonical request), in hex."),
            col("kind", Utf8, false, "Endpoint kind: `chat`, `embeddings` or `rerank`."),
            col("model", Utf8, false, "Model name the request was sent to."),
            col("request", Utf8, false, "The canonical request body (JSON)."),
            col("response", Utf8, false, "The response body kept (JSON)."),
            col("created_at", Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false, "When it was stored."),
        ],
        unique_key: &["key"],
    }
}

/// The table called `name`, or an error listing the valid names.
pub fn table(name: &str) -> Result<TableSpec, crate::Error> {
    all_tables().into_iter().find(|t| t.name == name).ok_or_else(|| crate::Error::UnknownTable {
        name: name.to_string(),
        valid: all_tables().iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
    })
}

/// Markdown documentation of every table, as in docs/tables.md.
pub fn tables_markdown() -> String {
    all_tables().iter().map(TableSpec::markdown).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dag_table_is_defined_once() {
        let names: Vec<_> = all_tables().iter().map(|t| t.name).collect();
        for expected in [
            "items",
            "query_log",
            "qrels",
            "needs",
            "queries",
            "item_embeddings",
            "retrieval_1",
            "hard_queries",
            "reasoning",
            "keywords",
            "cot",
            "retrieval_2",
            "gain",
            "relevance",
            "triples",
            "triples_cold_start",
            "triples_rl",
            "failures",
        ] {
            assert_eq!(names.iter().filter(|n| **n == expected).count(), 1, "{expected}");
        }
    }

    #[test]
    fn keys_name_real_non_null_columns_and_every_column_is_documented() {
        for t in all_tables() {
            for k in t.unique_key {
                let c = t.column(k).unwrap_or_else(|| panic!("{}: key {k} is not a column", t.name));
                assert!(!c.nullable, "{}.{k} is a key but nullable", t.name);
            }
            for c in &t.columns {
                assert!(c.doc.len() > 5, "{}.{} has no doc", t.name, c.name);
            }
        }
    }

    #[test]
    fn unknown_table_lists_valid_names() {
        let err = table("tripels").unwrap_err().to_string();
        assert!(err.contains("tripels") && err.contains("triples_cold_start"), "{err}");
    }
}
