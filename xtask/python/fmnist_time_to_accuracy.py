"""The main job's recipe (configs/fashion-mnist.toml) in PyTorch + timm, for the time-to-accuracy
comparison of issue 13: the same ViT (patch 4, D 64, depth 4, 4 heads, MLP 128, mean pool),
AdamW 2e-3 (weight decay 0.05, none on biases, norms, tokens and position embedding), 200
linear warm-up steps then cosine to 1e-5 over --steps, clipping at global norm 1, batch 128,
zero-padded random crop (2) + horizontal flip, one DataLoader worker, over the same IDX files;
the 10,000 test images evaluated after every epoch (468 steps), as vit-train does.

Prints one JSON line per evaluation: step, epoch, seconds since training started, test top-1.
Stops after --steps or once --max-seconds have passed (at the next evaluation).

  xtask/.venv/bin/python xtask/python/fmnist_time_to_accuracy.py --max-seconds 1080
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from bench_torch import fmnist_setup, read_idx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--max-seconds", type=float, default=float("inf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = "datasets/fashion-mnist"
    test_x = torch.from_numpy(read_idx(f"{root}/t10k-images-idx3-ubyte.gz").copy())
    test_y = torch.from_numpy(read_idx(f"{root}/t10k-labels-idx1-ubyte.gz").astype("int64"))
    test_x = ((test_x.float() / 255.0 - 0.2860) / 0.3530).unsqueeze(1)
    lr, min_lr, warmup = 2e-3, 1e-5, 200
    loader, m, opt = fmnist_setup(lr)

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))

    def evaluate():
        m.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(test_y), 500):
                correct += (m(test_x[i:i + 500]).argmax(1) == test_y[i:i + 500]).sum().item()
        m.train()
        return 100.0 * correct / len(test_y)

    m.train()
    start = time.perf_counter()
    step, epoch = 0, 0
    while step < args.steps:
        epoch += 1
        for x, y in loader:
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            step += 1
            if step >= args.steps:
                break
        top1 = evaluate()
        seconds = time.perf_counter() - start
        print(json.dumps({"side": "torch", "step": step, "epoch": epoch, "seconds": seconds,
                          "top1": top1, "torch": torch.__version__}), flush=True)
        if seconds >= args.max_seconds:
            break


if __name__ == "__main__":
    main()
