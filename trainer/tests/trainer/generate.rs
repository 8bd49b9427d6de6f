//! Repetition controls through the generation engine (continuous batching, the KV cache), on a
//! tiny random decoder whose greedy text loops, as a small trained model's CoT does. Hugging
//! Face's own `repetition_penalty` is pinned in the parity test.

use lrem_trainer::backend::Cpu;
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::generate::{SamplingParams, generate};

fn repeats(ids: &[u32], n: usize) -> bool {
    let mut seen = std::collections::HashSet::new();
    ids.windows(n).any(|w| !seen.insert(w.to_vec()))
}

#[test]
fn repetition_controls_hold_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let lm = LanguageModel::<Cpu>::load(&crate::train::tiny_model_dir(dir.path(), 5), &Default::default()).unwrap();
    let prompts: Vec<Vec<u32>> = ["a drink more energizing than tea", "shoes for standing all day"]
        .iter()
        .map(|q| lm.tokenizer.encode(q, true).unwrap())
        .collect();
    let run = |penalties: &str| {
        let params = SamplingParams { max_tokens: 40, penalties: penalties.parse().unwrap(), ..Default::default() };
        let done = generate(&lm.model, &lm.tokenizer, &prompts, &params).unwrap();
        done.into_iter().map(|c| c.ids).collect::<Vec<_>>()
    };
    let plain = run("off");
    // Otherwise the controls below would have nothing to change.
    assert!(plain.iter().all(|ids| ids.len() == 40 && repeats(ids, 3)), "{plain:?}");
    for ids in run("no-repeat-ngram=3") {
        assert_eq!(ids.len(), 40);
        assert!(!repeats(&ids, 3), "a trigram repeats: {ids:?}");
    }
    // A random decoder's logits spread over less than 2, so a presence penalty of 2 puts every
    // token already written below every other one: 40 distinct tokens.
    for ids in run("presence=2") {
        assert!(!repeats(&ids, 1), "a token repeats: {ids:?}");
    }
    // Penalties off is the plain greedy text, token for token.
    assert_eq!(run("repetition=1+presence=0"), plain);
}
