//! GRPO's rewards on hand-made samples.

use lrem_trainer::rl::rewards::*;

const END: u32 = 7;
const EMB: u32 = 8;
const EOS: u32 = 9;

/// A sample that closed its CoT (`</think>` written), well formed or not.
fn sample(cot_tokens: usize, well_formed: bool, rank: usize, items: usize) -> Sample<'static> {
    Sample { query: "q", ids: &[], cot_tokens, closed: true, well_formed, rank, items }
}

#[test]
fn retrieval_reward_spans_one_to_zero_and_one_item_is_defined() {
    assert_eq!(retrieval_reward(1, 8), 1.0);
    assert_eq!(retrieval_reward(8, 8), 0.0);
    assert!((retrieval_reward(2, 4) - 0.5).abs() < 1e-12);
    assert_eq!(retrieval_reward(1, 1), 1.0);
}

#[test]
fn rank_counts_ties_against_the_positive_and_other_positives_not_at_all() {
    // The positive at 0.5; one negative above, one tied, one below.
    assert_eq!(rank_of_positive(&[0.5, 0.9, 0.5, 0.1], &[true, false, false, false]), 3);
    // Every item alike: rank N.
    assert_eq!(rank_of_positive(&[0.3; 4], &[false, true, false, false]), 4);
    // A second positive above the first is no competitor: the best positive counts.
    assert_eq!(rank_of_positive(&[0.2, 0.9, 0.5], &[true, true, false]), 1);
    assert_eq!(rank_of_positive(&[0.4], &[true]), 1);
}

#[test]
fn completions_parse_into_cot_length_and_form() {
    let parse = |ids: &[u32]| {
        let e = parse_completion(ids, END, EMB, &[EOS]);
        (e.cot_tokens, e.closed, e.well_formed)
    };
    // Well formed, empty CoT included: stopped at </think> (as rollouts are), or with <emb>.
    assert_eq!(parse(&[1, 2, END]), (2, true, true));
    assert_eq!(parse(&[1, 2, END, EMB]), (2, true, true));
    assert_eq!(parse(&[END]), (0, true, true));
    assert_eq!(parse(&[END, EMB]), (0, true, true));
    // No </think> within the budget: every token is CoT, and the form is wrong.
    assert_eq!(parse(&[1, 2, 3]), (3, false, false));
    // Stopped by <emb> or end of turn without </think>: the stop token is not CoT.
    assert_eq!(parse(&[1, 2, EMB]), (2, false, false));
    assert_eq!(parse(&[1, 2, EOS]), (2, false, false));
    // Text after </think> or <emb>, or <emb> inside the CoT: closed, not well formed.
    assert_eq!(parse(&[1, END, 4]), (1, true, false));
    assert_eq!(parse(&[1, END, EMB, 4]), (1, true, false));
    assert_eq!(parse(&[1, END, END]), (1, true, false));
    assert_eq!(parse(&[EMB, 1, END, EMB]), (2, true, false));
}

/// The length reward reads the CoT as inference does: one that stopped on end of turn within
/// the budget is paid as one closed by `</think>` (only the format reward tells them apart).
#[test]
fn the_length_reward_reads_the_cot_as_inference_does() {
    let length = Length { budget: 16 };
    let stopped_on_end_of_turn = Sample { closed: false, ..sample(3, false, 1, 4) };
    assert_eq!(length.score(&stopped_on_end_of_turn), 1.0);
    assert_eq!(length.score(&sample(3, true, 1, 4)), 1.0);
    assert_eq!(length.score(&sample(17, false, 1, 4)), 0.0);
    assert_eq!(Format.score(&stopped_on_end_of_turn), 0.0);
}

#[test]
fn weighted_rewards_add_up_per_sample() {
    let rewards = Rewards::lrem(0.5, 0.2, 1.0, 16);
    let samples = [sample(3, true, 1, 4), sample(17, false, 4, 4), sample(16, true, 2, 4)];
    let scored = rewards.score(&samples);
    assert_eq!(scored.parts[0], [1.0, 0.0, 1.0]);
    assert_eq!(scored.parts[1], [1.0, 0.0, 1.0]);
    assert_eq!(scored.parts[2], [1.0, 0.0, 0.5]);
    let want = [1.7, 0.0, 0.5 + 0.2 + 0.5];
    for (got, want) in scored.total.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
