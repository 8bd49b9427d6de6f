//! GRPO's group advantages.

use lrem_trainer::rl::advantage::*;

#[test]
fn an_all_equal_group_has_zero_advantage_and_is_counted() {
    let a = advantages(&[0.5, 0.5, 0.5, 1.0, 0.0, 0.5], 3, Scaling::Group);
    assert_eq!(&a.values[..3], &[0.0, 0.0, 0.0]);
    assert_eq!(a.zero_groups, 1);
    assert!(a.values.iter().all(|v| v.is_finite()));
    // Group 2: mean 0.5, unbiased std 0.5.
    let want = [0.5 / (0.5 + EPS), -0.5 / (0.5 + EPS), 0.0];
    for (got, want) in a.values[3..].iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}

#[test]
fn a_single_sample_group_has_zero_advantage_not_nan() {
    let a = advantages(&[0.3, 0.9], 1, Scaling::Group);
    assert_eq!(a.values, [0.0, 0.0]);
    assert_eq!(a.zero_groups, 2);
}

#[test]
fn scalings_differ_only_in_the_divisor() {
    let rewards = [1.0, 0.0, 3.0, 1.0];
    let none = advantages(&rewards, 2, Scaling::None);
    assert_eq!(none.values, [0.5, -0.5, 1.0, -1.0]);
    let batch = advantages(&rewards, 2, Scaling::Batch);
    let s = std(&rewards) + EPS;
    assert_eq!(batch.values, none.values.iter().map(|v| v / s).collect::<Vec<_>>());
    let group = advantages(&rewards, 2, Scaling::Group);
    // Every group has the sign pattern of `none`, at unit-ish scale.
    for (g, n) in group.values.iter().zip(&none.values) {
        assert_eq!(g.signum(), n.signum());
        assert!((g.abs() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3, "{g}");
    }
}
