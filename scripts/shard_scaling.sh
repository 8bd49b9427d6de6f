#!/usr/bin/env bash
# How time and cost scale with shards on this machine: the sample world's pipeline, fresh (empty
# response cache), as 1, 2 and 4 shards (scripts/run_phases.sh: every heavy stage sharded, as the
# Slurm recipe runs it) against one local model server (the embedded models, chaos-free), written
# to runs/shard_scaling.md.
#   BIN=$CARGO_TARGET_DIR/debug scripts/shard_scaling.sh
set -euo pipefail
bin=${BIN:?the directory of the built binaries}
counts=${COUNTS:-1 2 4}
out=runs/shard_scaling.md
{
    echo "| shards | wall s | per phase s (queries, item embeddings, retrieval ①, mining, per query) | requests | prompt + completion tokens | triples |"
    echo "|---|---|---|---|---|---|"
} > "$out"
for n in $counts; do
    config=runs/scaling-$n.toml run_dir=runs/scaling-$n
    sed "s#^run_dir = .*#run_dir = \"$run_dir\"#" data_samples/pipeline.toml > "$config"
    rm -rf "$run_dir" "runs/scaling-$n.phases"
    start=$(date +%s.%N)
    CONFIG=$config RUN_WITH=scripts/run_phases.sh SHARDS=$n PHASE_LOG=runs/scaling-$n.phases BIN=$bin \
        scripts/triples.sh > "runs/scaling-$n.log" 2>&1
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    phases=$(awk '{printf "%s%s", sep, $2; sep=", "}' "runs/scaling-$n.phases")
    read -r requests tokens < <(python3 - "$run_dir" <<'PY'
import glob, json, sys
requests = tokens = 0
for path in glob.glob(f"{sys.argv[1]}/manifest*.json"):
    for stage in json.load(open(path))["stages"].values():
        for usage in stage["usage"].values():
            requests += usage.get("requests", 0)
            tokens += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
print(requests, tokens)
PY
)
    triples=$("$bin/lrem-pipeline" sql --run "$run_dir" --format csv -e "select count(*) from triples" | tail -1)
    printf '| %s | %.0f | %s | %s | %s | %s |\n' "$n" "$wall" "$phases" "$requests" "$tokens" "$triples" | tee -a "$out"
done
echo "wrote $out"
