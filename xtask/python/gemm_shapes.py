"""PyTorch's side of `cargo xtask gemm-shapes`: F.linear (x W^T + b) on the Linear shapes of
the benchmarked ViTs, best of --repeats calls, one JSON line per shape (GFLOP/s).

The shapes come as JSON lines on stdin ({"model", "layer", "m", "k", "n"}), as vit's
gemm_shapes example prints them, so both sides measure the same list."""
import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for line in sys.stdin:
        s = json.loads(line)
        m, k, n = s["m"], s["k"], s["n"]
        x = torch.randn(m, k)
        w = torch.randn(n, k)
        b = torch.randn(n)
        best = float("inf")
        with torch.no_grad():
            for _ in range(args.repeats + 2):
                t = time.perf_counter()
                F.linear(x, w, b)
                best = min(best, time.perf_counter() - t)
        out = {k2: s[k2] for k2 in ("model", "layer", "m", "k", "n")}
        out["gemm"] = f"torch {torch.__version__}"
        out["gflop_s"] = 2.0 * m * k * n / best / 1e9
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
