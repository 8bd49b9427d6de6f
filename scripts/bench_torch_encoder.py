"""sentence-transformers peer of trainer/examples/bench_encoder.rs: the same MiniLM folder, the
same texts (one per line), the same batch size and thread count; tokenize and encode timed
together. One JSON line."""

import argparse
import json
import resource
import time

import torch
from sentence_transformers import SentenceTransformer

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--texts", required=True)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)

texts = [line for line in open(args.texts, encoding="utf-8").read().splitlines() if line]
model = SentenceTransformer(args.model, device="cpu")
start = time.perf_counter()
vectors = model.encode(texts, batch_size=args.batch, convert_to_numpy=True)
seconds = time.perf_counter() - start
assert vectors.shape == (len(texts), model.get_sentence_embedding_dimension())
print(json.dumps({
    "impl": f"sentence-transformers-{__import__('sentence_transformers').__version__}", "texts": len(texts),
    "batch": args.batch, "seconds": seconds, "texts_per_s": len(texts) / seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
