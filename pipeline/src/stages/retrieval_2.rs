//! Stage `retrieval_2`: set ②, the existing retriever's top K for each query followed by its CoT.

use super::retrieval::RetrievalSet;
use super::stage::Scope;

pub struct Retrieval2;

impl RetrievalSet for Retrieval2 {
    const NAME: &'static str = "retrieval_2";
    const UPSTREAM: &'static [&'static str] = &["cot", "item_embeddings"];
    const SCOPE: Scope = Scope::PerQuery;
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/retrieval_2.sql");
}
