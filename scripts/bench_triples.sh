#!/usr/bin/env bash
# P6: `make triples` wall time on the sample world after the build (models installed, binaries
# built): a fresh run directory with an empty response cache, then the same command again
# (everything cached). Appends to runs/bench.md.
set -euo pipefail
config=runs/bench-triples.toml
sed 's#^run_dir = .*#run_dir = "runs/bench-triples"#' data_samples/pipeline.toml > "$config"
rm -rf runs/bench-triples
queries=$(sed -n 's/^max_queries *= *//p' "$config")
start=$(date +%s.%N)
CONFIG=$config scripts/triples.sh > runs/bench-triples.log 2>&1
fresh=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
CONFIG=$config scripts/triples.sh > runs/bench-triples-again.log 2>&1
again=$(echo "$(date +%s.%N) - $start" | bc)
printf '| P6 make triples | sample world, %s hard queries, SmolLM2 + MiniLM served locally, %s cores | fresh: %.0f s; again (cached): %.1f s | goal ≤ 300 s | %.2f× of the budget |\n' \
    "$queries" "$(nproc)" "$fresh" "$again" "$(echo "$fresh / 300" | bc -l)" >> runs/bench.md
