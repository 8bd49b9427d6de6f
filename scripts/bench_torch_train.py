"""The PyTorch peer of trainer/examples/bench_train_step.rs (P4, training): the same random-init
decoder shape, the same workload (first half of the batch queries, second half items; NTP over
every query token + InfoNCE between the last hidden states at τ = 0.05; backward; global
clipping at 1.0; one AdamW step, lr 1e-5, PyTorch defaults), the same threads. Prints a JSON line.

On a GPU (`--device cuda`) it is the reference the issue's goal is measured against: transformers'
SDPA attention, `--precision bf16` as autocast over f32 weights and AdamW state (what the Rust
trainer's default CUDA path does), PyTorch's fused AdamW, `--checkpointing 1` for transformers'
gradient checkpointing per decoder layer, and the MFU by the Rust bench's formula:
6 · (block parameters) · all tokens + 6 · (hidden · vocab) · query tokens."""

import argparse, json, resource, sys, time, warnings

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--shape", default="smollm2-135m", choices=["smollm2-135m", "qwen2.5-3b"])
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--steps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--device", default="cpu")
ap.add_argument("--precision", default="f32", choices=["f32", "bf16"])
ap.add_argument("--checkpointing", type=int, default=0)
ap.add_argument("--compile", type=int, default=0, help="torch.compile the decoder (minutes of compiling at 3B)")
ap.add_argument("--layers", type=int, default=0, help="fewer decoder layers than the shape has (a smoke test)")
ap.add_argument("--peak-tflops", type=float, default=0.0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
if a.shape == "smollm2-135m":
    config = LlamaConfig(vocab_size=49155, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
                         max_position_embeddings=8192, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         attention_bias=False)
    family = LlamaForCausalLM
else:  # Qwen2.5-3B: q/k/v with biases, tied embeddings
    config = Qwen2Config(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, rope_theta=1000000.0,
                         max_position_embeddings=32768, tie_word_embeddings=True, rms_norm_eps=1e-6)
    family = Qwen2ForCausalLM
if a.layers:
    config.num_hidden_layers = a.layers
device = torch.device(a.device)
cuda = device.type == "cuda"
config._attn_implementation = "sdpa"  # PyTorch's fused attention, forward and backward
with device:  # initialised where it runs: a 3B model's random init on one CPU thread takes minutes
    model = family(config).train()
if a.checkpointing:
    model.config.use_cache = False
    # deprecated in transformers 5.25 for activation_checkpointing_enable, which the GPU machine's 5.17 lacks
    warnings.simplefilter("ignore", FutureWarning)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
decoder = torch.compile(model.model) if a.compile else model.model
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
half = a.batch // 2
ids = torch.randint(0, config.vocab_size, (a.batch, a.seq), device=device)
targets = torch.arange(half, device=device)
autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16")


def step_once():
    with autocast:
        hidden = decoder(input_ids=ids).last_hidden_state
        logits = model.lm_head(hidden[:half, :-1])
        ntp = F.cross_entropy(logits.float().reshape(-1, config.vocab_size), ids[:half, 1:].reshape(-1))
        q = F.normalize(hidden[:half, -1].float(), dim=-1)
        d = F.normalize(hidden[half:, -1].float(), dim=-1)
        nce = F.cross_entropy(q @ d.T / 0.05, targets)
        loss = ntp + nce
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item(), norm.item()  # .item() waits for the device


name = (f"pytorch {torch.__version__} {a.device} {a.precision}" + (" checkpointing" if a.checkpointing else "")
        + (" compiled" if a.compile else ""))
times = []
for step in range(a.steps + 1):
    t = time.perf_counter()
    try:
        loss, norm = step_once()
    except torch.OutOfMemoryError:
        print(json.dumps({"impl": name, "shape": a.shape, "batch": a.batch, "seq": a.seq, "error": "out of memory"}))
        sys.exit(1)
    s = time.perf_counter() - t
    print(f"step {step}: {s:.3f}s loss {loss:.4f} grad norm {norm:.3f}", file=sys.stderr, flush=True)
    if step > 0:
        times.append(s)  # step 0 allocates, tunes and compiles
mean = sum(times) / len(times)
tokens = a.batch * a.seq
head = config.hidden_size * config.vocab_size
blocks = sum(p.numel() for p in model.parameters()) - head  # tied: the embedding is the head
flops = 6 * blocks * tokens + 6 * head * tokens / 2
report = {"impl": name, "shape": a.shape, "batch": a.batch, "seq": a.seq,
          "step_s": mean, "tok_s": tokens / mean, "model_tflops": flops / mean / 1e12,
          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
if cuda:
    report["device_name"] = torch.cuda.get_device_name(device)
    report["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
if a.peak_tflops > 0:
    report["mfu"] = flops / mean / (a.peak_tflops * 1e12)
print(json.dumps(report))
