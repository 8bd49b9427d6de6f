"""P5 client: decode throughput of an OpenAI-compatible chat server at 1 and at N concurrent
requests, streamed, greedy, `ignore_eos` so every request writes exactly `max_tokens` tokens on
every server. Prints one JSON line per concurrency level.

Decode tokens/s counts the tokens after each request's first one, over the time from the first
request's first token to the last request's last token: prefill is left out, as in llama-bench's
tg and vLLM's output-throughput figures.
"""

import argparse
import asyncio
import json
import time

import httpx

TOPICS = ["coffee", "tea", "running shoes", "kettles", "books", "phone chargers", "dog toys", "fans",
          "backpacks", "blenders", "socks", "lamps", "headphones", "pans", "umbrellas", "bicycles"]


async def one(client, url, model, topic, max_tokens):
    body = {"model": model, "stream": True, "temperature": 0, "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": f"Write a long product guide about {topic}."}]}
    first = last = finish = None
    async with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:])["choices"]
            if not choices:
                continue
            if choices[0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
            finish = choices[0].get("finish_reason") or finish
    # A chunk is not always one token (a split UTF-8 character waits for the next), so the count
    # comes from max_tokens, which ignore_eos makes exact; a reply that stopped early is an error.
    if finish != "length":
        raise RuntimeError(f"{url}: finish_reason {finish!r}, expected 'length' (ignore_eos not honoured?)")
    return first, last, max_tokens


async def level(url, model, concurrency, max_tokens, rounds):
    async with httpx.AsyncClient(timeout=600) as client:
        await one(client, url, model, "warm-up", 8)
        firsts, lasts, decoded = [], [], 0
        for r in range(rounds):
            results = await asyncio.gather(*(one(client, url, model, TOPICS[(r * concurrency + i) % len(TOPICS)],
                                                 max_tokens) for i in range(concurrency)))
            for first, last, tokens in results:
                firsts.append(first)
                lasts.append(last)
                decoded += tokens - 1
        # Rounds run one after another: sum each round's span.
        span = 0.0
        for r in range(rounds):
            batch = slice(r * concurrency, (r + 1) * concurrency)
            span += max(lasts[batch]) - min(firsts[batch])
        return decoded / span


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--model", required=True)
    ap.add_argument("--impl", required=True)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    for c in args.concurrency:
        tok_s = asyncio.run(level(f"{args.url}/v1/chat/completions", args.model, c, args.max_tokens, args.rounds))
        print(json.dumps({"impl": args.impl, "concurrency": c, "decode_tok_s": tok_s, "max_tokens": args.max_tokens}),
              flush=True)


if __name__ == "__main__":
    main()
