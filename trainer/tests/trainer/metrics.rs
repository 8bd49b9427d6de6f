//! The retrieval metrics and their bootstrap intervals, by hand.

use std::collections::HashMap;

use lrem_trainer::eval::metrics::*;

#[test]
fn metrics_equal_hand_computed_values() {
    let relevant = HashMap::from([(3, 3), (1, 1)]);
    let ranking = [5, 3, 9, 1];
    let m = at_k(&ranking, &relevant, 2);
    // DCG@2 = 7/log2(3); IDCG@2 = 7/log2(2) + 1/log2(3).
    let (dcg, idcg) = (7.0 / 3f64.log2(), 7.0 + 1.0 / 3f64.log2());
    assert_eq!((m.hit, m.recall), (1.0, 0.5));
    assert!((m.ndcg - dcg / idcg).abs() < 1e-12);
    let m = at_k(&ranking, &relevant, 4);
    assert_eq!(m.recall, 1.0);
    assert!((m.ndcg - (dcg + 1.0 / 5f64.log2()) / idcg).abs() < 1e-12);
    assert_eq!(at_k(&ranking, &relevant, 1), AtK { hit: 0.0, recall: 0.0, ndcg: 0.0 });
    assert_eq!(reciprocal_rank(&ranking, &relevant), 0.5);
    let catalogue = vec![(7, vec![1.0, 0.0]), (8, vec![0.0, 1.0]), (9, vec![0.6, 0.8])];
    assert_eq!(rank(&[0.0, 1.0], &catalogue), [8, 9, 7]);
}

#[test]
fn bootstrap_intervals_hold_the_mean_and_narrow_with_more_queries() {
    let few: Vec<f64> = (0..20).map(|i| (i % 2) as f64).collect();
    let many: Vec<f64> = (0..2000).map(|i| (i % 2) as f64).collect();
    let (a, b) = (estimate(&few, RESAMPLES, 1), estimate(&many, RESAMPLES, 1));
    assert_eq!((a.mean, b.mean), (0.5, 0.5));
    assert!(a.low < 0.5 && 0.5 < a.high && b.low < 0.5 && 0.5 < b.high, "{a:?} {b:?}");
    assert!(b.high - b.low < (a.high - a.low) / 4.0, "{a:?} {b:?}");
    assert_eq!(estimate(&[0.3; 5], RESAMPLES, 1), Estimate { mean: 0.3, low: 0.3, high: 0.3 });
}
