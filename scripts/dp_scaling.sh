#!/usr/bin/env bash
# Data-parallel cold start on this machine's CPUs: one process with every core against one
# process per core (`--world-size N --threads 1`), on the same global batches of the real
# SmolLM2-135M. Prints a Markdown table of the steps' tokens/s (the first step, which pays for
# first-touch page faults, left out).
# Usage: BIN=$CARGO_TARGET_DIR/debug scripts/dp_scaling.sh RUN_DIR [STEPS] [RANKS]
set -euo pipefail
bin=${BIN:?set BIN to the folder holding lrem-train}
triples=${1:?the pipeline run directory holding triples_cold_start}
steps=${2:-4}
ranks=${3:-$(nproc)}
work=$(mktemp -d /tmp/lrem-dp.XXXXXX)
trap 'rm -rf "$work"' EXIT
sed -e "s|^run_dir = .*|run_dir = \"$triples\"|" -e "s|^epochs = .*|epochs = 1\nmax_steps = $steps|" \
    data_samples/cold_start.toml > "$work/train.toml"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/lrem-train" --threads "$ranks" cold-start --config "$work/train.toml" --run-dir "$work/one" > /dev/null
for r in $(seq 0 $((ranks - 1))); do
    "$bin/lrem-train" --threads 1 cold-start --config "$work/train.toml" --run-dir "$work/dp" \
        --world-size "$ranks" --rank "$r" --master "127.0.0.1:$port" > /dev/null &
done
wait
python3 - "$work" "$ranks" <<'PY'
import json, sys
work, ranks = sys.argv[1], int(sys.argv[2])
def rate(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl")][1:]
    return sum(r["tokens_per_s"] for r in rows) / len(rows), rows[-1]["loss"]
(one, l1), (dp, l2) = rate("one"), rate("dp")
print(f"| layout | tokens/s | last loss |\n|---|---|---|")
print(f"| 1 process × {ranks} threads | {one:.1f} | {l1:.4f} |")
print(f"| {ranks} processes × 1 thread | {dp:.1f} | {l2:.4f} |")
print(f"\n{ranks} ranks / 1 process: {dp / one:.2f}×")
PY
