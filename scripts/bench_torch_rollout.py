"""PyTorch peer of the rollout in trainer/examples/bench_rl_step.rs (P4, RL): a random-init
SmolLM2-135M-shaped decoder, `batch` prompts of `prompt` random tokens, `group` sampled
completions of each (transformers `generate` with `num_return_sequences`) of exactly `new`
tokens at temperature 1, with each sampled token's log-probability, on the same thread count.
The first round warms up and is not counted. One JSON line."""

import argparse
import json
import resource
import time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

parser = argparse.ArgumentParser()
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--group", type=int, default=8)
parser.add_argument("--prompt", type=int, default=33)
parser.add_argument("--new", type=int, default=18)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--steps", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

# SmolLM2-135M's shape, with the three LREM tokens in the vocabulary as the trainer has them.
config = LlamaConfig(
    vocab_size=49155, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
    max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
)
model = LlamaForCausalLM(config).eval()
prompts = torch.randint(0, 49152, (args.batch, args.prompt))
times = []
with torch.inference_mode():
    for step in range(args.steps + 1):
        start = time.perf_counter()
        out = model.generate(
            prompts, attention_mask=torch.ones_like(prompts), do_sample=True, temperature=1.0,
            top_k=0, top_p=1.0, num_return_sequences=args.group, max_new_tokens=args.new,
            min_new_tokens=args.new, output_scores=True, return_dict_in_generate=True, pad_token_id=0,
        )
        logprobs = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        assert logprobs.shape == (args.batch * args.group, args.new), logprobs.shape
        if step > 0:
            times.append(time.perf_counter() - start)
mean = sum(times) / len(times)
print(json.dumps({
    "impl": f"pytorch-{torch.__version__} transformers-{transformers.__version__}",
    "batch": args.batch, "group": args.group, "new": args.new,
    "rollout_s": mean, "sampled_tok_s": args.batch * args.group * args.new / mean,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
