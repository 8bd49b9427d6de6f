"""P1 peer: the reasoning and keywords calls per query as a minimal Python client does them
(asyncio + httpx, a semaphore for concurrency: the shape of Curator's and NeMo Curator's OpenAI
clients), with the same prompts as the pipeline, a JSON parse of the keyword reply, and no
cache, no Parquet, no retries. Prints req/s and requests per CPU-second of this process.
"""

import argparse
import asyncio
import json
import pathlib
import resource
import time

import httpx

PROMPTS = pathlib.Path(__file__).resolve().parent.parent / "pipeline" / "prompts"


def render(template, **values):
    for k, v in values.items():
        template = template.replace("{{ " + k + " }}", v)
    return template


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="base URL ending in /v1")
    ap.add_argument("--queries", required=True, help="a text file, one query per line")
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    queries = [q for q in pathlib.Path(args.queries).read_text().splitlines() if q]
    reasoning_t = (PROMPTS / "reasoning.v1.txt").read_text()
    keywords_t = (PROMPTS / "keywords.v2.txt").read_text()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    gate = asyncio.Semaphore(args.concurrency)
    url = f"{args.url}/chat/completions"

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def chat(prompt, max_tokens):
            async with gate:
                body = {"model": "fake-chat", "temperature": 0.0, "max_tokens": max_tokens, "seed": 0,
                        "messages": [{"role": "user", "content": prompt}]}
                r = await client.post(url, json=body)
                r.raise_for_status()
                return r.json()["choices"][0]["message"]["content"]

        async def one(query):
            reasoning = await chat(render(reasoning_t, query=query), 256)
            reply = await chat(render(keywords_t, query=query, reasoning=reasoning), 256)
            return query, reasoning, json.loads(reply)

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(q) for q in queries))
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    requests = 2 * len(results)
    print(json.dumps({"requests": requests, "req_s": requests / wall, "req_per_cpu_s": requests / cpu,
                      "wall_s": wall, "cpu_s": cpu}))


if __name__ == "__main__":
    asyncio.run(main())
