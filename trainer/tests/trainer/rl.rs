//! GRPO's rollouts on a tiny random decoder with SmolLM2's real tokenizer: the log-probabilities
//! stored while sampling are those a fresh forward pass gives the same tokens.

use lrem_trainer::backend::Cpu;
use lrem_trainer::format::{EMB, END_THINK, Prompting, TOKENS};
use lrem_trainer::model::decoder::{Decoder, DecoderConfig};
use lrem_trainer::model::gguf::GgufFile;
use lrem_trainer::model::layers::host;
use lrem_trainer::model::tokenizer::TextTokenizer;
use lrem_trainer::model::weights::RandomWeights;
use lrem_trainer::rl::rollout::{RolloutParams, sample, sampled_logprobs};

use crate::smollm2;

#[test]
fn sampled_logprobs_equal_a_fresh_forward_pass_and_samples_end_as_parsed() {
    let mut tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&smollm2()).unwrap()).unwrap();
    tokenizer.add_special_tokens(&TOKENS);
    let model: Decoder<Cpu> =
        Decoder::load(&DecoderConfig::tiny(tokenizer.vocab_size()), &mut RandomWeights::new(5), &Default::default())
            .unwrap();
    let (end_think, emb) = (tokenizer.token_id(END_THINK).unwrap(), tokenizer.token_id(EMB).unwrap());
    let p = Prompting { tokenizer: &tokenizer, system_prompt: Some(String::new()) };
    let prompts: Vec<Vec<u32>> =
        ["a drink more energizing than tea", "mug"].iter().map(|q| p.query_prompt(q).unwrap()).collect();
    let params = RolloutParams { group: 4, temperature: 0.8, top_p: 0.95, budget: 6, seed: 11 };
    let rollouts = sample(&model, &tokenizer, &prompts, &params, end_think, emb).unwrap();
    let order: Vec<(usize, usize)> = rollouts.iter().map(|r| (r.query, r.sample)).collect();
    assert_eq!(order, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]);
    // Seeded samples of one prompt differ.
    assert!(rollouts[..4].iter().any(|r| r.ids != rollouts[0].ids), "{rollouts:?}");
    for r in &rollouts {
        assert_eq!(r.ids.len(), r.logprobs.len());
        assert!(r.ids.len() <= params.budget + 2);
        let seq = r.embedding_sequence(&prompts[r.query], end_think, emb, &tokenizer.stop_ids());
        assert!(seq.ends_with(&[end_think, emb]) && seq.starts_with(&prompts[r.query]));
    }
    let pairs: Vec<(&[u32], &[u32])> =
        rollouts.iter().map(|r| (prompts[r.query].as_slice(), r.ids.as_slice())).collect();
    // Stored at temperature 1, whatever the sampling temperature.
    let fresh = host(sampled_logprobs(&model, &pairs, 1.0));
    let width = rollouts.iter().map(|r| r.ids.len()).max().unwrap();
    for (i, r) in rollouts.iter().enumerate() {
        for (j, stored) in r.logprobs.iter().enumerate() {
            let again = fresh[i * width + j];
            assert!((stored - again).abs() < 1e-4, "sample {i} token {j}: stored {stored}, fresh {again}");
        }
    }
}
