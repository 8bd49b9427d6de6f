#!/usr/bin/env python3
"""How likely an exported LREM model is to close its CoT where its training data does: for a
sample of a run's cold-start triples, the model is fed `prompt<think>CoT` (the reference CoT)
and this prints the probability and rank of `</think>` at the next position, the probability of
the base model's end of turn (`<|im_end|>`) there, and of `<emb>` after `</think>`, with the
CoT's own tokens' mean negative log-likelihood (how closely it fits its training CoTs). A model that
learned the format puts most of its mass on `</think>`; one that did not writes the CoT and then
ends the turn, or runs to the budget (eval's "How the generated CoTs ended").

It loads the model with transformers (the export's parity with it is tested), so it needs torch,
transformers, tokenizers and pyarrow.
Usage: scripts/closing_tokens.py MODEL_DIR PIPELINE_RUN_DIR [N=40] [SEED=0]
"""
import glob
import json
import random
import statistics
import sys


def main():
    if len(sys.argv) not in (3, 4, 5):
        sys.exit(__doc__)
    import pyarrow.parquet as pq
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    model_dir, run_dir = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    system = json.load(open(f"{model_dir}/lrem.json")).get("system_prompt")
    if system is None:
        sys.exit(f"{model_dir}/lrem.json: no system_prompt; this script renders an explicit one only")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    files = sorted(glob.glob(f"{run_dir}/tables/triples_cold_start/*.parquet"))
    if not files:
        sys.exit(f"{run_dir}/tables/triples_cold_start: no Parquet files")
    triples = pq.read_table(files, columns=["query", "cot"]).to_pylist()
    rows = random.Random(seed).sample(triples, min(n, len(triples)))

    ids = {t: tok.token_to_id(t) for t in ("</think>", "<|im_end|>", "<emb>")}
    if None in ids.values():
        sys.exit(f"{model_dir}: the tokenizer lacks one of {list(ids)}")
    end, eot, emb = ids["</think>"], ids["<|im_end|>"], ids["<emb>"]
    p_end, p_eot, rank, p_emb = [], [], [], []
    cot_nll, cot_tokens = 0.0, 0
    for r in rows:
        # Format::query_sequence with SmolLM2's template.
        prompt = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{r['query']}<|im_end|>\n<|im_start|>assistant\n<think>"
        prompt_ids = tok.encode(prompt, add_special_tokens=False).ids
        cot = tok.encode(r["cot"], add_special_tokens=False).ids
        head = prompt_ids + cot
        with torch.no_grad():
            logp = model(torch.tensor([head + [end, emb]])).logits[0].log_softmax(-1)
        cot_nll -= sum(logp[len(prompt_ids) - 1 + j, t].item() for j, t in enumerate(cot))
        cot_tokens += len(cot)
        at = len(head) - 1
        p_end.append(logp[at, end].exp().item())
        p_eot.append(logp[at, eot].exp().item())
        rank.append(int((logp[at] > logp[at, end]).sum()) + 1)
        p_emb.append(logp[at + 1, emb].exp().item())
    med = statistics.median
    print(f"{model_dir}, {len(rows)} cold-start triples of {run_dir}, after the reference CoT:")
    print(f"  P(</think>)    median {med(p_end):.4f}  mean {statistics.mean(p_end):.4f}  rank median {med(rank):.0f}")
    print(f"  P(<|im_end|>)  median {med(p_eot):.4f}")
    print(f"  P(<emb> | </think>) median {med(p_emb):.4f}")
    print(f"  the reference CoT: {cot_tokens / len(rows):.1f} tokens, {cot_nll / max(cot_tokens, 1):.3f} nats a token")


if __name__ == "__main__":
    main()
