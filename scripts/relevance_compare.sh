#!/usr/bin/env bash
# Which relevance filter agrees better with the sample world's qrels: the MiniLM similarity
# threshold or the SmolLM2 yes/no judge? Both score the same gain pairs of a finished
# `make triples` run (a copy of its run directory, so only `relevance` and below rerun), and each
# is scored against qrels (a pair is relevant when qrels grades it ≥ 1; unjudged pairs are not).
# Prints precision, recall and F1 per method and threshold. Needs the server of scripts/triples.sh,
# so it runs through it: `make relevance-compare`.
set -euo pipefail
bin=${BIN:?}
base_run=${RUN:-runs/sample}
[[ -d $base_run/tables/gain ]] || { echo "$base_run has no gain table: run make triples first" >&2; exit 1; }

for method in similarity judge; do
    run=runs/relevance-$method
    rm -rf "$run" && cp -r "$base_run" "$run"
    cp data_samples/qrels.parquet "$run/qrels.parquet"
    config=runs/relevance-$method.toml
    # The judge (SmolLM2 on the reasoner endpoint) scores P(yes): threshold 0.5. The similarity
    # threshold is the committed one.
    edits=(-e "s#^run_dir = .*#run_dir = \"$run\"#" -e "/^\[stages.relevance\]/,/^\[/s#^method = .*#method = \"$method\"#")
    if [[ $method == judge ]]; then
        edits+=(-e "/^\[stages.relevance\]/,/^\[/s#^endpoint = .*#endpoint = \"reasoner\"#"
            -e "/^\[stages.relevance\]/,/^\[/s#^threshold = .*#threshold = 0.5#")
    fi
    sed "${edits[@]}" data_samples/pipeline.toml > "$config"
    CONFIG=$config scripts/triples.sh > "runs/relevance-$method.log" 2>&1 ||
        { tail -20 "runs/relevance-$method.log" >&2; exit 1; }
done

for method in similarity judge; do
    echo "== $method =="
    "$bin/lrem-pipeline" sql --run runs/relevance-$method --format table -e "
        WITH pairs AS (
            SELECT r.score, coalesce(q.grade, 0) >= 1 AS truth
            FROM relevance r LEFT JOIN qrels q ON q.query_id = r.query_id AND q.item_id = r.item_id),
        thresholds AS (SELECT * FROM (VALUES (0.25), (0.3), (0.35), (0.4), (0.45), (0.5), (0.6), (0.7)) AS t(threshold)),
        counts AS (
            SELECT threshold,
                   sum(CASE WHEN score >= threshold AND truth THEN 1 ELSE 0 END) AS tp,
                   sum(CASE WHEN score >= threshold THEN 1 ELSE 0 END) AS kept,
                   sum(CASE WHEN truth THEN 1 ELSE 0 END) AS relevant,
                   count(*) AS pairs
            FROM pairs CROSS JOIN thresholds GROUP BY threshold)
        SELECT threshold, pairs, relevant, kept, tp,
               round(CAST(tp AS DOUBLE) / nullif(kept, 0), 3) AS precision,
               round(CAST(tp AS DOUBLE) / nullif(relevant, 0), 3) AS recall,
               round(2.0 * tp / nullif(kept + relevant, 0), 3) AS f1
        FROM counts ORDER BY threshold"
done
