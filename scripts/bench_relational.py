"""P3 peers: the relational stages (queries, hard_queries, gain, the triples split) run by DuckDB
or Polars on the files `bench_relational prepare` wrote, in the steps the pipeline takes.

    bench_relational.py duckdb DIR    # the pipeline's own SQL files, in DuckDB's dialect
    bench_relational.py polars DIR    # the same queries as Polars lazy frames (its SQL has no
                                      # correlated NOT EXISTS or ordered/filtered array_agg)
    bench_relational.py report ROOT   # Markdown rows for runs/bench.md from ROOT/*/{engine}.json

Each engine takes the pipeline's steps: the counts a stage reports, and its writes; where the
pipeline evaluates a query once for several outputs, the peers materialise it once (a DuckDB
temporary table, a collected Polars frame). Prints one JSON line: seconds and rows per stage, peak RSS. Outputs go to DIR/out-<engine>/ as
zstd-6 Parquet, the pipeline's codec. Our UDFs become each engine's native equivalents:
lrem_normalize -> lower-case + whitespace squeeze (identical on datagen's ASCII queries; the row
counts are compared by scripts/bench_relational.sh), lrem_query_id -> XXH3-64 from the `xxhash`
package in a vectorised Python function (the ids must match the retrieval sets'), lrem_bucket ->
the engine's own 64-bit hash (so `triples_rl` holds a different 5% of the queries).
"""

import json
import re
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rendered(name, params):
    text = (REPO / "sql" / "stages" / f"{name}.sql").read_text()
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(params[m.group(1)]), text)


def query_ids(texts):
    """lrem_query_id, vectorised per batch: XXH3-64 of the (already normalised) text, the pipeline's
    id, so the peers join the retrieval sets on the same keys. Called once per distinct query."""
    import pyarrow as pa
    import xxhash

    return pa.array([xxhash.xxh3_64_intdigest(t.encode()) for t in texts.to_pylist()], pa.uint64())


def duckdb_dialect(sql):
    sql = re.sub(r"lrem_normalize\(([\w.]+)\)", r"lower(trim(regexp_replace(\1, '\\s+', ' ', 'g')))", sql)
    sql = re.sub(
        r"lrem_bucket\(([\w.]+), CAST\((\w+) AS BIGINT UNSIGNED\)\)",
        r"(CAST(hash(\1, CAST(\2 AS UBIGINT)) AS DOUBLE) / 18446744073709551616.0)",
        sql,
    )
    def struct_pack(m):
        args = [a.strip() for a in m.group(1).split(",")]
        return "struct_pack({})".format(", ".join(f"{k.strip(chr(39))} := {v}" for k, v in zip(args[::2], args[1::2])))

    sql = re.sub(r"named_struct\(([^()]*)\)", struct_pack, sql)
    sql = sql.replace("make_array()", "CAST([] AS BIGINT[])").replace("cardinality(", "len(")
    return sql.replace("regexp_like(", "regexp_matches(")


# DuckDB's faster form of sql/stages/gain.sql (7.3 s against 8.9 s for the pipeline's list
# lookup at 56M rows per set): the peer runs its best plan, not ours.
GAIN_NOT_EXISTS = """
SELECT r2.query_id, r2.item_id, r2.rank, r2.score
FROM retrieval_2 r2
WHERE NOT EXISTS (SELECT 1 FROM retrieval_1 r1 WHERE r1.query_id = r2.query_id AND r1.item_id = r2.item_id)
"""


def run_duckdb(d, params, out, stage):
    import duckdb

    con = duckdb.connect()
    con.create_function("lrem_query_id", query_ids, ["VARCHAR"], "UBIGINT", type="arrow")
    con.execute("CREATE MACRO lrem_list_field(l, f) AS list_transform(l, lambda s: struct_extract(s, f))")
    tables = d / "run" / "tables"
    for name, path in [
        ("query_log", d / "inputs" / "query_log.parquet"),
        ("items", d / "inputs" / "items.parquet"),
        *[(t, tables / t / "*.parquet") for t in ["retrieval_1", "retrieval_2", "cot", "relevance"]],
    ]:
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")

    def write(sql, table):
        path = out / f"{table}.parquet"
        con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 6)")
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
        return count(f"SELECT count(*) FROM {table}")

    def count(sql):
        return con.execute(sql).fetchone()[0]

    sql = lambda name: duckdb_dialect(rendered(name, params))  # noqa: E731
    with stage("queries") as s:
        count("SELECT count(*) FROM query_log")
        s["rows"] = write(sql("queries"), "queries")
    with stage("hard_queries") as s:
        # The pipeline evaluates the mining query once (counting verdicts as it writes): here, a
        # temporary table, then the count and the write from it.
        con.execute(f"CREATE TEMP TABLE judged AS {sql('hard_queries')}")
        con.execute("SELECT verdict, count(*) FROM judged GROUP BY verdict").fetchall()
        s["rows"] = write("SELECT * EXCLUDE (verdict) FROM judged WHERE verdict = 'hard'", "hard_queries")
    with stage("gain") as s:
        count("SELECT count(*) FROM retrieval_2")
        s["rows"] = write(GAIN_NOT_EXISTS, "gain")
    with stage("split") as s:
        count("SELECT count(*) FROM relevance")
        count("SELECT count(*) FROM relevance WHERE relevant")
        con.execute(f"CREATE TEMP TABLE split AS {sql('triples')}")
        s["rows"] = write("SELECT * FROM split", "triples")
        write("SELECT * FROM split WHERE NOT rl", "triples_cold_start")
        s["rl_rows"] = write("SELECT * FROM split WHERE rl", "triples_rl")


def run_polars(d, params, out, stage):
    import polars as pl
    from xxhash import xxh3_64_intdigest as xxh3

    tables = d / "run" / "tables"
    scan = lambda t: pl.scan_parquet(tables / t / "*.parquet")  # noqa: E731

    def write(frame, table):
        path = out / f"{table}.parquet"
        frame.sink_parquet(path, compression="zstd", compression_level=6)
        return pl.scan_parquet(path).select(pl.len()).collect().item()

    with stage("queries") as s:
        log = pl.scan_parquet(d / "inputs" / "query_log.parquet")
        log.select(pl.len()).collect()
        log = log.with_columns(pl.col("query").str.replace_all(r"\s+", " ").str.strip_chars().str.to_lowercase())
        per_item = log.group_by("query", "item_id").agg(pl.col("impressions", "clicks", "orders").sum())
        per_query = log.group_by("query").agg(days=pl.col("day").n_unique())
        order = dict(by=["orders", "clicks", "item_id"], descending=[True, True, False])
        engaged = (pl.col("clicks") + pl.col("orders")) > 0
        queries = (
            per_item.join(per_query, on="query")
            .group_by("query", "days")
            .agg(
                pl.col("impressions", "clicks", "orders").sum(),
                engaged_items=pl.col("item_id").sort_by(**order).filter(engaged.sort_by(**order)),
            )
            .with_columns(
                query_id=pl.col("query").map_batches(
                    lambda s: pl.Series([xxh3(t.encode()) for t in s.to_list()], dtype=pl.UInt64),
                    return_dtype=pl.UInt64,
                ),
                ctr=pl.when(pl.col("impressions") > 0)
                .then(pl.col("clicks") / pl.col("impressions"))
                .otherwise(0.0),
            )
        )
        s["rows"] = write(queries, "queries")
    with stage("hard_queries") as s:
        queries = pl.scan_parquet(out / "queries.parquet")
        r1 = scan("retrieval_1").select("query_id", "item_id")
        missed = (
            queries.select("query_id", item_id="engaged_items")
            .explode("item_id")
            .drop_nulls("item_id")
            .join(r1, on=["query_id", "item_id"], how="anti")
            .group_by("query_id")
            .agg(missed_items=pl.col("item_id").sort(), missed=pl.len())
        )
        p = params
        n_engaged = pl.col("engaged_items").list.len()
        n_missed = pl.col("missed").fill_null(0)
        share = pl.when(n_engaged > 0).then(n_missed / n_engaged).otherwise(0.0)
        verdict = (
            pl.when(pl.col("days") < p["min_days"]).then(pl.lit("too_few_days"))
            .when(pl.col("impressions") < p["min_impressions"]).then(pl.lit("too_few_impressions"))
            .when(pl.col("ctr") > p["max_ctr"]).then(pl.lit("ctr_above_max"))
            .when(n_missed < p["min_missed_items"]).then(pl.lit("too_few_missed_items"))
            .when((n_engaged == 0) | (share < p["min_missed_share"])).then(pl.lit("missed_share_below_min"))
            .otherwise(pl.lit("hard"))
        )
        judged = queries.join(missed, on="query_id", how="left").select(
            "query_id", "query", "impressions", "clicks", "ctr",
            engaged_items=n_engaged,
            missed_items=pl.col("missed_items").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
            missed_share=share,
            pattern=pl.lit(None, dtype=pl.String),
            verdict=verdict,
        )
        judged = judged.collect()
        judged.group_by("verdict").len()
        s["rows"] = write(judged.lazy().filter(pl.col("verdict") == "hard").drop("verdict"), "hard_queries")
    with stage("gain") as s:
        r2 = scan("retrieval_2")
        r2.select(pl.len()).collect()
        r1 = scan("retrieval_1").select("query_id", "item_id")
        s["rows"] = write(r2.join(r1, on=["query_id", "item_id"], how="anti"), "gain")
    with stage("split") as s:
        relevance = scan("relevance")
        relevance.select(pl.len()).collect()
        relevance.filter("relevant").select(pl.len()).collect()
        bucket = pl.col("query_id").hash(params["seed"]).cast(pl.Float64) / float(1 << 64)
        split = (
            relevance.filter("relevant")
            .join(scan("cot").select("query_id", "query", "cot"), on="query_id")
            .join(pl.scan_parquet(d / "inputs" / "items.parquet").select("item_id", "title"), on="item_id")
            .select("query_id", "query", "cot", "item_id", "title", relevance="score",
                    rl=bucket < params["rl_fraction"])
        )
        split = split.collect().lazy()
        s["rows"] = write(split, "triples")
        write(split.filter(~pl.col("rl")), "triples_cold_start")
        s["rl_rows"] = write(split.filter(pl.col("rl")), "triples_rl")


def report(root):
    """P3 rows: per scale, total time and peak RSS of each engine, the ratio to DuckDB, and the
    output row counts, which must agree across engines (else the row says so)."""
    scales = sorted((p for p in root.iterdir() if (p / "pipeline.json").exists()), key=lambda p: int(p.name))
    rss = []
    for d in scales:
        params = json.loads((d / "params.json").read_text())
        runs = {e: json.loads((d / f"{e}.json").read_text()) for e in ["pipeline", "duckdb", "polars"]}
        retrieval = params["tables"]["retrieval_1"] + params["tables"]["retrieval_2"]
        ours, duck, polars = runs["pipeline"], runs["duckdb"], runs["polars"]
        rows = {e: tuple(r["stages"][s]["rows"] for s in ["queries", "hard_queries", "gain", "split"]) for e, r in runs.items()}
        agree = len(set(rows.values())) == 1
        per_stage = "; ".join(
            f"{s} {ours['stages'][s]['seconds']:.1f}/{duck['stages'][s]['seconds']:.1f}/{polars['stages'][s]['seconds']:.1f}"
            for s in ["queries", "hard_queries", "gain", "split"]
        )
        check = "rows agree: {:,} queries, {:,} hard, {:,} gain, {:,} triples".format(*rows["pipeline"]) if agree else (
            f"**ROW COUNTS DIFFER**: {rows}")
        print(
            f"| P3 relational stages | {params['log_rows'] / 1e6:g}M log rows, {retrieval / 1e6:.0f}M retrieval rows (① + ②); "
            f"s per stage pipeline/DuckDB/Polars: {per_stage}; {check} "
            f"| pipeline {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MiB "
            f"| {duck['engine']} {duck['seconds']:.1f} s, {duck['peak_rss_mb']:.0f} MiB; "
            f"{polars['engine']} {polars['seconds']:.1f} s, {polars['peak_rss_mb']:.0f} MiB "
            f"| **{ours['seconds'] / duck['seconds']:.2f}× DuckDB's time** (goal ≤ 1.0), "
            f"{ours['seconds'] / polars['seconds']:.2f}× Polars' |"
        )
        rss.append((params["log_rows"], ours["peak_rss_mb"], duck["peak_rss_mb"], polars["peak_rss_mb"]))
    if len(rss) >= 2:
        (small, *_), (large, *_) = rss[0], rss[-1]
        growth = [rss[-1][i] / rss[0][i] for i in (1, 2, 3)]
        print(
            f"| P3 memory | peak RSS from {small / 1e6:g}M to {large / 1e6:g}M log rows ({large / small:g}× input) "
            f"| pipeline {rss[0][1]:.0f} → {rss[-1][1]:.0f} MiB | DuckDB {rss[0][2]:.0f} → {rss[-1][2]:.0f} MiB; "
            f"Polars {rss[0][3]:.0f} → {rss[-1][3]:.0f} MiB "
            f"| pipeline {growth[0]:.1f}×, DuckDB {growth[1]:.1f}×, Polars {growth[2]:.1f}× (flat = 1×) |"
        )


def main():
    if sys.argv[1] == "report":
        return report(Path(sys.argv[2]))
    engine, d = sys.argv[1], Path(sys.argv[2])
    params = json.loads((d / "params.json").read_text())
    out = d / f"out-{engine}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    stages = {}

    class stage:
        def __init__(self, name):
            self.name = name

        def __enter__(self):
            self.start, self.record = time.perf_counter(), {}
            return self.record

        def __exit__(self, *exc):
            stages[self.name] = {"seconds": time.perf_counter() - self.start, **self.record}

    start = time.perf_counter()
    {"duckdb": run_duckdb, "polars": run_polars}[engine](d, params, out, stage)
    print(json.dumps({
        "engine": f"{engine} {__import__(engine).__version__}",
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": stages,
    }))


if __name__ == "__main__":
    main()
