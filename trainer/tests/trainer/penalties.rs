//! The sampling penalties: OpenAI's, the repetition penalty and no-repeat n-grams.

use lrem_trainer::model::penalties::*;

fn applied(p: &str, logits: &[f32], prompt: &[u32], completion: &[u32]) -> Vec<f32> {
    let mut l = logits.to_vec();
    p.parse::<Penalties>().unwrap().apply(&mut l, prompt, completion);
    l
}

#[test]
fn openai_penalties_count_the_completion_only() {
    let l = applied("presence=0.5+frequency=0.25", &[1.0, 1.0, 1.0, 1.0], &[3], &[1, 2, 2]);
    assert_eq!(l, [1.0, 1.0 - 0.75, 1.0 - 1.0, 1.0]);
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_over_prompt_and_completion() {
    let l = applied("repetition=2", &[2.0, -2.0, 2.0, 2.0], &[0, 1], &[1, 3]);
    assert_eq!(l, [1.0, -4.0, 2.0, 1.0]);
}

#[test]
fn no_repeat_ngram_bans_what_followed_the_same_prefix() {
    // Completion 5 6 7 5 6: the trigram (5 6 7) exists, so after "5 6" the token 7 is banned.
    let l = applied("no-repeat-ngram=3", &[0.0; 9], &[7, 7], &[5, 6, 7, 5, 6]);
    assert_eq!(l[7], f32::NEG_INFINITY);
    assert!(l.iter().enumerate().all(|(i, &x)| i == 7 || x == 0.0));
    // A bigram ban: after 6, both 7 (from "6 7") and nothing else.
    let l = applied("no-repeat-ngram=2", &[0.0; 9], &[], &[6, 7, 6]);
    assert_eq!(l.iter().filter(|x| x.is_infinite()).count(), 1);
    assert_eq!(l[7], f32::NEG_INFINITY);
    // Unigrams: no token twice.
    let l = applied("no-repeat-ngram=1", &[0.0; 4], &[], &[1, 3]);
    assert_eq!(l, [0.0, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
    // Too short a completion to have a prefix: nothing banned.
    assert_eq!(applied("no-repeat-ngram=3", &[0.0; 4], &[], &[1]), [0.0; 4]);
}

#[test]
fn off_changes_nothing_and_settings_round_trip_through_their_names() {
    assert_eq!(applied("off", &[1.0, -1.0], &[0, 1], &[0, 1, 1]), [1.0, -1.0]);
    for s in ["off", "presence=0.5", "repetition=1.2+no-repeat-ngram=3", "frequency=-0.5+presence=1"] {
        let p: Penalties = s.parse().unwrap();
        assert_eq!(p.to_string().parse::<Penalties>().unwrap(), p, "{s}");
    }
    assert_eq!(
        "no-repeat-ngram=3+repetition=1.2".parse::<Penalties>().unwrap().to_string(),
        "repetition=1.2+no-repeat-ngram=3"
    );
}

#[test]
fn out_of_range_settings_name_the_field() {
    assert!("presence=3".parse::<Penalties>().unwrap_err().contains("presence_penalty"));
    assert!("frequency=-2.5".parse::<Penalties>().unwrap_err().contains("frequency_penalty"));
    assert!("repetition=0".parse::<Penalties>().unwrap_err().contains("repetition_penalty"));
    assert!("temperature=1".parse::<Penalties>().unwrap_err().contains("not one of"));
    assert!("presence".parse::<Penalties>().unwrap_err().contains("KEY=VALUE"));
}
