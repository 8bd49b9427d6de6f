#!/usr/bin/env bash
# The model core on an NVIDIA GPU: build with --features cuda, run the parity tests (real
# SmolLM2 and MiniLM weights against the committed transformers fixtures) and the tiny-config
# tests on CUDA, and time SmolLM2 decoding. Prints a short table; `make gpu-check` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
start=$(date +%s)
cargo build --quiet -p lrem-trainer --features cuda --all-targets
echo "build: $(( $(date +%s) - start ))s"
status=0
for t in parity decoder; do
    if cargo test --quiet -p lrem-trainer --features cuda --test trainer "$t::" 2>&1 | tail -3; then
        echo "| $t | pass |"
    else
        echo "| $t | FAIL |"; status=1
    fi
done
exit $status
