"""PyTorch peer of trainer/examples/bench_matmul.rs: torch.matmul at the same f32 shapes and
thread count, the result read back as the Rust side does. One JSON line per shape."""

import argparse
import json
import resource
import time

import torch

SHAPES = [
    ("smollm2 gate/up", 512, 576, 1536),
    ("smollm2 down", 512, 1536, 576),
    ("smollm2 lm head", 512, 576, 49152),
    ("minilm ffn", 4096, 384, 1536),
]

parser = argparse.ArgumentParser()
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)
for name, m, k, n in SHAPES:
    a = torch.rand(m, k) * 2 - 1
    b = torch.rand(k, n) * 2 - 1
    (a @ b).numpy()
    start = time.perf_counter()
    for _ in range(args.repeats):
        (a @ b).numpy()
    seconds = (time.perf_counter() - start) / args.repeats
    print(json.dumps({
        "impl": f"pytorch-{torch.__version__} ({torch.backends.cpu.get_cpu_capability()})", "shape": name,
        "m": m, "k": k, "n": n, "seconds": seconds, "gflops": 2 * m * k * n / seconds / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
