"""PyTorch peer of trainer/examples/bench_decoder.rs: the same GGUF weights (dequantised to
float32 by transformers), the same prompts, the same loop (prefill, then greedy steps with the KV
cache), the same thread count. One JSON line."""

import argparse
import json
import resource
import time

import torch
from transformers import AutoModelForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", required=True)
parser.add_argument("--gguf-file", required=True)
parser.add_argument("--batch", type=int, default=1)
parser.add_argument("--prompt-tokens", type=int, default=128)
parser.add_argument("--new-tokens", type=int, default=32)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)

model = AutoModelForCausalLM.from_pretrained(args.model_dir, gguf_file=args.gguf_file, torch_dtype=torch.float32)
model.eval()
prompts = torch.tensor([[1000 + (b * 131 + t * 17) % 20000 for t in range(args.prompt_tokens)] for b in range(args.batch)])
with torch.inference_mode():
    start = time.perf_counter()
    out = model(prompts, use_cache=True, logits_to_keep=1)
    prefill = time.perf_counter() - start
    past = out.past_key_values
    logits = out.logits[:, -1]
    start = time.perf_counter()
    for _ in range(args.new_tokens):
        nxt = logits.argmax(-1, keepdim=True)
        out = model(nxt, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1]
    decode = time.perf_counter() - start
print(json.dumps({
    "impl": f"pytorch-{torch.__version__}", "batch": args.batch, "prompt_tokens": args.prompt_tokens,
    "new_tokens": args.new_tokens, "prefill_tok_s": args.batch * args.prompt_tokens / prefill,
    "decode_tok_s": args.batch * args.new_tokens / decode,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
