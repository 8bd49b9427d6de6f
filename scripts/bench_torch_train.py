"""The PyTorch peer of trainer/examples/bench_train_step.rs (P4, training): the same random-init
decoder shape, the same workload (first half of the batch queries, second half items; NTP over
every query token + InfoNCE between the last hidden states at τ = 0.05; backward; global
clipping at 1.0; one AdamW step, lr 1e-5, PyTorch defaults), the same threads. Prints a JSON line."""

import argparse, json, resource, time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
config = LlamaConfig(vocab_size=49155, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
                     max_position_embeddings=8192, tie_word_embeddings=True, rms_norm_eps=1e-5,
                     attention_bias=False)
model = LlamaForCausalLM(config).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
half = a.batch // 2
ids = torch.randint(0, config.vocab_size, (a.batch, a.seq))
times = []
for step in range(a.steps + 1):
    t = time.perf_counter()
    hidden = model.model(input_ids=ids).last_hidden_state
    q_hidden = hidden[:half]
    logits = model.lm_head(q_hidden[:, :-1])
    ntp = F.cross_entropy(logits.reshape(-1, config.vocab_size), ids[:half, 1:].reshape(-1))
    q = F.normalize(hidden[:half, -1], dim=-1)
    d = F.normalize(hidden[half:, -1], dim=-1)
    nce = F.cross_entropy(q @ d.T / 0.05, torch.arange(half))
    loss = ntp + nce
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step > 0:
        times.append(time.perf_counter() - t)
mean = sum(times) / len(times)
print(json.dumps({"impl": f"pytorch {torch.__version__}", "batch": a.batch, "seq": a.seq,
                  "step_s": mean, "tok_s": a.batch * a.seq / mean,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
