//! Reinforcement learning after cold start (GRPO, the paper's second stage): the rewards of a
//! sampled CoT, group-relative advantages, the clipped objective, rollouts, one update's
//! gradients, and the `lrem-train rl` loop over them, with its curves.

pub mod advantage;
pub mod config;
pub mod curves;
pub mod objective;
pub mod rewards;
pub mod rollout;
pub mod run;
pub mod step;
