//! Group-relative advantages: each reward minus its group's mean (the G samples of one query),
//! scaled as configured. TRL's `scale_rewards` names the same three choices.

use serde::{Deserialize, Serialize};

/// How the centred rewards are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// By the group's standard deviation (GRPO; TRL's default).
    #[default]
    Group,
    /// By the whole batch's standard deviation.
    Batch,
    /// Not scaled (Dr. GRPO: the group std favours groups that are nearly solved).
    None,
}

/// Added to the deviation before dividing, as TRL does; an all-equal group stays at 0.
pub const EPS: f64 = 1e-4;

#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    pub values: Vec<f64>,
    /// Groups whose rewards were all equal: they contribute no gradient.
    pub zero_groups: usize,
}

/// Advantages of `rewards`, laid out as consecutive groups of `group` samples.
pub fn advantages(rewards: &[f64], group: usize, scaling: Scaling) -> Advantages {
    assert!(group > 0 && rewards.len().is_multiple_of(group), "{} rewards in groups of {group}", rewards.len());
    let batch_std = std(rewards);
    let mut values = Vec::with_capacity(rewards.len());
    let mut zero_groups = 0;
    for g in rewards.chunks(group) {
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        if g.iter().all(|&r| r == g[0]) {
            zero_groups += 1;
            values.extend(std::iter::repeat_n(0.0, g.len()));
            continue;
        }
        let scale = match scaling {
            Scaling::Group => std(g) + EPS,
            Scaling::Batch => batch_std + EPS,
            Scaling::None => 1.0,
        };
        values.extend(g.iter().map(|r| (r - mean) / scale));
    }
    Advantages { values, zero_groups }
}

/// The unbiased sample standard deviation (torch's `std` default); 0 for fewer than 2 values.
pub fn std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}
