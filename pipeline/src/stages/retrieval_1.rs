//! Stage `retrieval_1`: set ①, the existing retriever's top K for each query as searched.

use super::retrieval::RetrievalSet;
use super::stage::Scope;

pub struct Retrieval1;

impl RetrievalSet for Retrieval1 {
    const NAME: &'static str = "retrieval_1";
    const UPSTREAM: &'static [&'static str] = &["queries", "item_embeddings"];
    const SCOPE: Scope = Scope::PerQuery;
    const INPUT_SQL: &'static str = include_str!("../../../sql/stages/retrieval_1.sql");
}
