#!/usr/bin/env python3
"""The headline table of docs/experiment.md from an eval.json: per retriever, Recall@10 and
HitRate@100 / Recall@100 on head queries, unseen needs and unseen phrasings, each with its 95%
bootstrap interval. Usage: scripts/experiment_table.py runs/train/eval/eval.json"""
import json
import sys

result = json.load(open(sys.argv[1]))
groups = [("head", "head"), ("hard, unseen needs", "unseen needs"), ("hard, unseen phrasings", "unseen phrasings")]


def cell(e):
    return f"{e['mean'] + 0.0:.3f} [{e['low'] + 0.0:.2f}, {e['high'] + 0.0:.2f}]"


def at(split, k):
    return next(a for a in split["at"] if a["k"] >= min(k, result["catalogue"]))


header = "| retriever |" + "".join(f" {label} R@10 | {label} HR@100 | {label} R@100 |" for _, label in groups)
print(header)
print("|---|" + "---:|" * (3 * len(groups)))
for r in result["retrievers"]:
    cells = []
    for key, _ in groups:
        split = r["splits"].get(key)
        if split is None:
            cells += ["–"] * 3
            continue
        cells += [cell(at(split, 10)["recall"]), cell(at(split, 100)["hit_rate"]), cell(at(split, 100)["recall"])]
    print(f"| {r['name']} | " + " | ".join(cells) + " |")
print()
relevant = result.get("relevant_items")  # absent in reports before 2026-12-07
print(f"Queries: {result['queries']}; catalogue: {result['catalogue']} items"
      + (f" ({relevant} relevant, {result['catalogue'] - relevant} random)." if relevant is not None else "."))
