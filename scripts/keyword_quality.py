"""Keyword quality of a pipeline run against the sample world's knowledge (a measure, never a
training signal): of the hard queries reasoned, the share with at least one kept keyword, and of
the kept keywords, the share that name a relevant product type of the query's need.

A keyword names a type strictly when it contains the type's whole phrase ("ground coffee" in
"dark ground coffee"), leniently when it contains the type's last word or is a phrase of the type
("coffee" for "ground coffee"). Queries are matched to needs by their normalised text.

    python3 scripts/keyword_quality.py --bin DIR --run RUN_DIR --world data_samples/world.toml
"""

import argparse
import csv
import io
import json
import re
import subprocess
import tomllib


def sql(bin_dir, run, query):
    out = subprocess.run(
        [f"{bin_dir}/lrem-pipeline", "sql", "--run", run, "--format", "csv", "-e", query],
        check=True, capture_output=True, text=True,
    ).stdout
    return list(csv.DictReader(io.StringIO(out)))


def phrase_in(phrase, text):
    return re.search(r"(?<![\w])" + re.escape(phrase) + r"(?![\w])", text) is not None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--world", default="data_samples/world.toml")
    ap.add_argument("--json", help="also write the measures here")
    args = ap.parse_args()

    with open(args.world, "rb") as f:
        world = tomllib.load(f)
    # Normalised query text -> the relevant types of its need (lrem_normalize is the pipeline's).
    phrasings = [(q, need["relevant"]) for need in world["need"] for q in need["queries"]]
    values = ", ".join("('" + q.replace("'", "''") + "')" for q, _ in phrasings)
    normalised = sql(args.bin, args.run, f"select lrem_normalize(column1) as q from (values {values})")
    relevant = {row["q"]: types for row, (_, types) in zip(normalised, phrasings)}

    reasoned = sql(args.bin, args.run, "select query from reasoning")
    kept = sql(args.bin, args.run, "select query, array_to_string(keywords, '|') as keywords from cot")
    hard = len(reasoned)
    with_keyword = len(kept)
    keywords = strict = lenient = unknown = 0
    for row in kept:
        types = relevant.get(row["query"])
        if types is None:
            unknown += 1  # a hard query that is not one of the world's needs (a head query mined as hard)
            continue
        for k in row["keywords"].split("|"):
            keywords += 1
            strict += any(phrase_in(t, k) for t in types)
            lenient += any(phrase_in(t, k) or phrase_in(t.split()[-1], k) or phrase_in(k, t) for t in types)
    measures = {
        "hard_queries_reasoned": hard,
        "with_a_kept_keyword": with_keyword,
        "share_with_a_kept_keyword": round(with_keyword / hard, 3) if hard else None,
        "kept_keywords_of_known_needs": keywords,
        "share_naming_a_relevant_type_strict": round(strict / keywords, 3) if keywords else None,
        "share_naming_a_relevant_type_lenient": round(lenient / keywords, 3) if keywords else None,
        "queries_of_no_need": unknown,
    }
    for k, v in measures.items():
        print(f"{k}: {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(measures, f, indent=1)


if __name__ == "__main__":
    main()
