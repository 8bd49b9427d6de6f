#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (the P5 peer) from the llama.cpp sources that the PyPI sdist
# of llama-cpp-python vendors: PyPI is the one registry this machine reaches that carries them.
# CPU-only, portable flags (no -march=native, no AVX-512/AMX, which some of these machines lack),
# into $LLAMA_DIR (outside the clone; built once). Prints the binary's path.
set -euo pipefail

version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
dir=${LLAMA_DIR:-$HOME/.cache/lrem-llama}
py=${PY:?a Python with pip (the bench venv)}
bin=$dir/build/bin/llama-server
if [[ -x $bin ]]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$dir"
if [[ ! -d $dir/src ]]; then
    # The sdist's address, from PyPI's JSON API (relative to the index on some mirrors).
    index=https://pypi.org/pypi/llama-cpp-python/json
    url=$(curl -sf "$index" | "$py" -c '
import json, sys, urllib.parse
release = json.load(sys.stdin)["releases"][sys.argv[2]]
print(urllib.parse.urljoin(sys.argv[1], next(u["url"] for u in release if u["packagetype"] == "sdist")))' "$index" "$version")
    curl -sfL "$url" -o "$dir/sdist.tar.gz"
    mkdir -p "$dir/src" && tar xzf "$dir/sdist.tar.gz" -C "$dir/src" --strip-components=1
fi
"$py" -m pip install --quiet cmake ninja >&2
export PATH=$(dirname "$py"):$PATH
cmake -S "$dir/src/vendor/llama.cpp" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF > "$dir/cmake.log" 2>&1 ||
    { tail -30 "$dir/cmake.log" >&2; exit 1; }
cmake --build "$dir/build" --target llama-server -j "$(nproc)" > "$dir/build.log" 2>&1 ||
    { tail -30 "$dir/build.log" >&2; exit 1; }
echo "$bin"
