#!/usr/bin/env python3
"""Paired differences between two rows of two eval.json files ranked on the same queries (the
same --holdout-seed, --queries-per-kind and --catalogue), as eval's own report computes them
within one file: per split, the mean of B minus A over queries and its 95% bootstrap interval.
Usage: scripts/paired_diff.py A/eval.json "row A" B/eval.json "row B"
"""
import json
import random
import sys

RESAMPLES = 1000


def row(path, name):
    result = json.load(open(path))
    for r in result["retrievers"]:
        if r["name"] == name:
            return r
    sys.exit(f"{path}: no row named {name!r}; rows: {[r['name'] for r in result['retrievers']]}")


def interval(d, seed):
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(d) for _ in d) / len(d) for _ in range(RESAMPLES))
    return means[int(0.025 * RESAMPLES)], means[int(0.975 * RESAMPLES) - 1]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    a, b = row(sys.argv[1], sys.argv[2]), row(sys.argv[3], sys.argv[4])
    print(f"{sys.argv[4]} minus {sys.argv[2]}, per query\n")
    print("| split | queries | ΔR@10 | ΔHR@100 | ΔR@100 | ΔMRR |\n|---|---:|---:|---:|---:|---:|")
    for split, base in a["splits"].items():
        other = b["splits"].get(split)
        if split == "all" or other is None:
            continue
        pa, pb = base["per_query"], other["per_query"]
        if len(pa) != len(pb):
            sys.exit(f"{split}: {len(pa)} queries against {len(pb)}: not the same evaluation")
        ks = [x["k"] for x in base["at"]]
        j10 = next(j for j, k in enumerate(ks) if k >= 10)
        j100 = next((j for j, k in enumerate(ks) if k >= 100), len(ks) - 1)

        def cell(f):
            d = [f(y) - f(x) for x, y in zip(pa, pb)]
            low, high = interval(d, sum(map(ord, split)))
            mark = " *" if low > 0 or high < 0 else ""
            return f"{sum(d) / len(d):+.3f} [{low:+.2f}, {high:+.2f}]{mark}"

        cells = [
            cell(lambda q: q["at"][j10]["recall"]),
            cell(lambda q: q["at"][j100]["hit"]),
            cell(lambda q: q["at"][j100]["recall"]),
            cell(lambda q: q["reciprocal_rank"]),
        ]
        print(f"| {split} | {len(pa)} | " + " | ".join(cells) + " |")


main()
