"""The official `openai` Python SDK against `lrem-train serve`, with the SDK's default arguments.

Run by the trainer's `serve` test (`make test`): python openai_sdk_check.py BASE_URL CHAT EMBED.
Every call goes over real HTTP through the SDK's own client; any exception or failed check exits
non-zero with what went wrong. Prints one line per check.
"""

import json
import math
import sys

import openai
from openai import OpenAI

base_url, chat_model, embed_model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key="not-checked-on-loopback", max_retries=0, timeout=300)
user = [{"role": "user", "content": "What drink has more caffeine than tea?"}]


def check(name, ok, detail=""):
    if not ok:
        sys.exit(f"FAILED {name}: {detail}")
    print(f"ok {name}")


ids = [m.id for m in client.models.list()]
check("models.list", chat_model in ids and embed_model in ids, ids)

plain = client.chat.completions.create(model=chat_model, messages=user, temperature=0, max_tokens=12)
text = plain.choices[0].message.content
check("chat", text.startswith("The answer is: coffee") and plain.usage.completion_tokens == 12, text)

stream = client.chat.completions.create(model=chat_model, messages=user, temperature=0, max_tokens=12, stream=True)
streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
check("chat stream", streamed == text, f"{streamed!r} vs {text!r}")

sampled = client.chat.completions.create(
    model=chat_model, messages=user, temperature=1.0, seed=7, n=3, max_tokens=8, logprobs=True, top_logprobs=2
)
check("chat n", len(sampled.choices) == 3, len(sampled.choices))
steps = [s for c in sampled.choices for s in c.logprobs.content]
check("chat logprobs", steps and all(len(s.top_logprobs) == 2 and s.logprob <= 0 for s in steps), steps[:1])

schema = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 4}
constrained = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "List search keywords for: a drink more energizing than tea"}],
    temperature=0,
    max_tokens=64,
    response_format={"type": "json_schema", "json_schema": {"name": "keywords", "strict": True, "schema": schema}},
)
document = constrained.choices[0].message.content
keywords = json.loads(document)
check("chat response_format", isinstance(keywords, list) and 1 <= len(keywords) <= 4, document)

# The SDK asks for encoding_format="base64" unless told otherwise, and decodes it itself.
default = client.embeddings.create(model=embed_model, input="coffee").data[0].embedding
norm = math.sqrt(sum(x * x for x in default))
check("embeddings (SDK default: base64)", len(default) == 384 and abs(norm - 1) < 1e-4, (len(default), norm))

floats = client.embeddings.create(model=embed_model, input=["coffee", "tea"], encoding_format="float").data
same = max(abs(a - b) for a, b in zip(floats[0].embedding, default))
check("embeddings float = base64", len(floats) == 2 and same < 1e-5, same)

try:
    client.embeddings.create(model=embed_model, input="coffee", dimensions=8)
    check("embeddings dimensions refused", False, "a 384-dimensional model accepted dimensions=8")
except openai.BadRequestError as e:
    check("embeddings dimensions refused", "dimensions" in str(e), e)
native = client.embeddings.create(model=embed_model, input="coffee", dimensions=384).data[0].embedding
check("embeddings dimensions = native", len(native) == 384)
