//! `curves.svg` of an RL run, drawn from its `metrics.jsonl`: the rewards, what the CoT looks
//! like, the policy's entropy and clipping, and the losses.

use std::path::Path;

use serde_json::Value;

use crate::error::{Context, Result};
use crate::plot::{Panel, line_panels};

pub fn plot(metrics: &Path, svg: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).with_context(|| metrics.display().to_string())?;
    let lines: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}: line {}", metrics.display(), i + 1)))
        .collect::<Result<_>>()?;
    let series = |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<(f64, f64)> {
        lines.iter().filter_map(|l| Some((l["step"].as_f64()?, f(l)?))).collect()
    };
    let field = |name: &'static str| move |l: &Value| l[name].as_f64();
    // Each reward's mean: `rewards` holds [name, mean, std] triples.
    let names: Vec<String> = lines
        .first()
        .and_then(|l| l["rewards"].as_array())
        .map(|r| r.iter().filter_map(|t| t[0].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut rewards = vec![("total", series(&field("reward_mean")))];
    for (k, name) in names.iter().enumerate() {
        rewards.push((name.as_str(), series(&|l: &Value| l["rewards"][k][1].as_f64())));
    }
    let zero_share = |l: &Value| Some(l["zero_advantage_groups"].as_f64()? / l["groups"].as_f64()?.max(1.0));
    let mut policy = vec![("entropy estimate", series(&field("entropy")))];
    if lines.iter().any(|l| l["kl"].is_number()) {
        policy.push(("KL to the reference", series(&field("kl"))));
    }
    let panels = [
        Panel { title: "mean reward", series: rewards },
        Panel { title: "mean CoT tokens", series: vec![("CoT tokens", series(&field("cot_tokens_mean")))] },
        Panel {
            title: "shares",
            series: vec![
                ("format failures", series(&field("format_failure_rate"))),
                ("clipped", series(&field("clip_fraction"))),
                ("zero-advantage groups", series(&zero_share)),
            ],
        },
        Panel { title: "policy", series: policy },
        Panel { title: "clipped objective (minimised)", series: vec![("objective", series(&field("objective")))] },
        Panel { title: "InfoNCE of the sampled queries", series: vec![("InfoNCE", series(&field("infonce")))] },
    ];
    line_panels(svg, &panels, 2)
}
