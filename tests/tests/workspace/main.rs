//! Tests across both halves of the workspace, as one binary (one link of DataFusion and Burn).

mod e2e;
mod readme;
mod sample_world;
