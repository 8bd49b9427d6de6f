//! The pipeline's integration tests, as one binary (one link of DataFusion instead of four).

mod aimd;
mod cache;
mod cli;
mod cluster;
mod common;
mod cot_rules;
mod dag;
mod datagen;
mod engine;
mod index;
mod keyword_parse;
mod manifest;
mod object_store;
mod prompts;
mod resume;
mod s3;
mod sql;
