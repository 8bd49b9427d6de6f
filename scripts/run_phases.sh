#!/usr/bin/env bash
# Runs a config's sharded run on this machine the way `lrem-pipeline slurm` writes it, without
# Slurm: its batch scripts in order, a sharded phase as SHARDS concurrent processes (each with the
# SLURM_ARRAY_TASK_ID / _COUNT an array task gets), the next phase once all of them ended. Prints
# a line per phase with its seconds (also appended to $PHASE_LOG).
#   BIN=target/debug SHARDS=4 scripts/run_phases.sh CONFIG
set -euo pipefail
config=${1:?a pipeline config}
bin=${BIN:?the directory of the built binaries}
shards=${SHARDS:?how many shards}
recipe=$(mktemp -d)
trap 'rm -rf "$recipe"' EXIT
"$bin/lrem-pipeline" slurm --config "$config" --shards "$shards" --retries 0 --out "$recipe" > /dev/null
for script in "$recipe"/[0-9]*.sbatch; do
    phase=$(basename "$script" .sbatch)
    start=$(date +%s.%N)
    if grep -q '^#SBATCH --array' "$script"; then
        pids=()
        for i in $(seq 0 $((shards - 1))); do
            SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=$shards bash "$script" &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
    else
        bash "$script"
    fi
    printf '%s %.1f\n' "$phase" "$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "${PHASE_LOG:-/dev/null}"
done
