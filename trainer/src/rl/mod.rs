//! Reinforcement learning after cold start (GRPO, the paper's second stage): the rewards of a
//! sampled CoT, group-relative advantages, and the clipped objective. The rollout and update
//! loop (`lrem-train rl`) builds on these.

pub mod advantage;
pub mod objective;
pub mod rewards;
pub mod rollout;
pub mod step;
