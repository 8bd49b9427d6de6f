#!/usr/bin/env bash
# P3: the relational stages (queries, hard_queries, gain, the triples split) on datagen worlds at
# two scales, by the pipeline and by DuckDB and Polars on the same files, each engine in its own
# process (peak RSS is the process's). Worlds are kept in runs/bench-relational/ and reused.
# Appends to runs/bench.md. Scales: P3_SCALES="log_rows:queries ..." (queries sized so that K = 100
# gives about five retrieval rows per log row, as at the 10M / 50M).
set -euo pipefail
: "${BIN:?BIN=target/debug}" "${PY:?PY=python with duckdb, polars, pyarrow, xxhash}"
root=runs/bench-relational
for scale in ${P3_SCALES:-1000000:60000 10000000:600000}; do
    rows=${scale%%:*} queries=${scale##*:}
    dir=$root/$rows
    if [ ! -f "$dir/params.json" ]; then
        rm -rf "$dir"
        echo "P3: preparing $rows log rows (once; kept in $dir)" >&2
        "$BIN/examples/bench_relational" prepare "$dir" --log-rows "$rows" --queries "$queries" --items 100000
    fi
    echo "P3: $rows log rows: pipeline, DuckDB, Polars" >&2
    "$BIN/examples/bench_relational" run "$dir" > "$dir/pipeline.json"
    "$PY" scripts/bench_relational.py duckdb "$dir" > "$dir/duckdb.json"
    "$PY" scripts/bench_relational.py polars "$dir" > "$dir/polars.json"
    rm -rf "$dir"/out-*
done
"$PY" scripts/bench_relational.py report "$root" >> runs/bench.md
