//! The pipeline's integration tests, as one binary (one link of DataFusion instead of four).

mod cli;
mod cluster;
mod common;
mod engine;
mod object_store;
mod prompts;
mod resume;
mod s3;
