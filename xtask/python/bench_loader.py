"""torchvision + timm side of the image-folder benchmarks (`cargo xtask bench`,
`cargo xtask bench-loader`): one case per process, one JSON line out.

- imagefolder-train: torchvision `ImageFolder` over `cargo xtask data imagenet-like`'s training
  folder with timm's training transform (`create_transform(224, is_training=True)`:
  RandomResizedCropAndInterpolation scale (0.08, 1), bilinear, flip 0.5, no colour jitter,
  ToTensor, Normalize 0.5), a `DataLoader` (batch 64, shuffle, --workers workers, persistent),
  and a ViT too small to matter (patch 32, D 32, one block) trained with AdamW,
  torch.set_num_threads(--threads). The mean time per step after the warm-up steps.
- imagefolder-load: the same loader alone.
- sample-SIZE: one worker's work per image (decode, RandomResizedCrop to SIZE, flip, ToTensor,
  Normalize) in this process, one thread: images per second.
- candidates: Pillow's parts on the folder's JPEGs: decode (`Image.open` + `convert("RGB")`),
  crop + resize to 224 (bilinear, bicubic), ToTensor + Normalize; ms per image.
"""
import argparse
import io
import json
import os
import random
import resource
import time

import timm
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from timm.data import create_transform
from timm.models.vision_transformer import VisionTransformer

ROOT = "datasets/imagenet-like"


def transform(size):
    return create_transform(size, is_training=True, scale=(0.08, 1.0), hflip=0.5,
                            color_jitter=None, interpolation="bilinear", mean=(0.5,) * 3,
                            std=(0.5,) * 3)


def loader(workers, size=224):
    ds = torchvision.datasets.ImageFolder(os.path.join(ROOT, "train"), transform=transform(size),
                                          is_valid_file=lambda p: not os.path.basename(p).startswith("odd_truncated"))
    return torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0)


def shard_loader(workers, size=224):
    """webdataset's pipeline over the same images as shards (cargo xtask bench-shards): shard
    shuffle, split by worker, a shuffle buffer of timm's size (8192, initial 2048), PIL decode,
    the same transform, batches of 64 from a DataLoader of `workers` processes."""
    import glob
    import json
    import webdataset as wds
    root = os.environ.get("VIT_BENCH_SHARDS", os.path.join(ROOT, "shards"))
    n = len(json.load(open(os.path.join(root, "train.index.json")))["shards"])
    urls = os.path.join(root, "train-{000000..%06d}.tar" % (n - 1))
    t = transform(size)
    ds = (wds.WebDataset(urls, shardshuffle=100, nodesplitter=wds.split_by_node,
                         workersplitter=wds.split_by_worker, empty_check=False)
          .shuffle(8192, initial=2048)
          .decode("pil", handler=wds.warn_and_continue)
          .to_tuple("jpg;jpeg;png", "cls", handler=wds.warn_and_continue)
          .map_tuple(lambda im: t(im.convert("RGB")), int)
          .batched(64, partial=False))
    return wds.WebLoader(ds, batch_size=None, num_workers=workers, persistent_workers=workers > 0)


def forever(dl):
    while True:
        for b in dl:
            yield b


def mean_time(warmup, steps, fn):
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def files():
    out = []
    for c in sorted(os.listdir(os.path.join(ROOT, "train"))):
        d = os.path.join(ROOT, "train", c)
        out += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".jpg") and not n.startswith("odd_")]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {"side": "torch", "backend": f"torch {torch.__version__} torchvision {torchvision.__version__}",
           "timm": timm.__version__, "pillow": Image.__version__, "case": a.case, "threads": a.threads,
           "workers": a.workers, "steps": a.steps}
    if a.case in ("imagefolder-train", "imagefolder-load", "shards-train", "shards-load"):
        make = shard_loader if a.case.startswith("shards-") else loader
        batches = forever(make(a.workers))
        if a.case.endswith("-train"):
            m = VisionTransformer(img_size=224, patch_size=32, num_classes=10, embed_dim=32, depth=1,
                                  num_heads=2)
            m.train()
            opt = torch.optim.AdamW(m.parameters(), lr=1e-3)

            def step():
                x, y = next(batches)
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(m(x), y).backward()
                opt.step()
        else:
            def step():
                next(batches)
        s = mean_time(a.warmup, a.steps, step)
        out.update(seconds=s, img_s=64 / s)
    elif a.case.startswith("sample-"):
        torch.set_num_threads(1)
        size = int(a.case.split("-")[1])
        t = transform(size)
        fs = files()
        random.seed(0)
        order = [random.choice(fs) for _ in range(a.steps * 16)]

        def one(f):
            with open(f, "rb") as fh:
                t(Image.open(fh).convert("RGB"))
        for f in order[:16]:
            one(f)
        t0 = time.perf_counter()
        for f in order:
            one(f)
        s = (time.perf_counter() - t0) / len(order)
        out.update(seconds=s, img_s=1 / s)
    elif a.case == "candidates":
        torch.set_num_threads(1)
        fs = files()[:: max(1, len(files()) // 200)]
        data = [open(f, "rb").read() for f in fs]

        def best(fn):
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) / len(data))
            return min(times) * 1e3
        imgs = [Image.open(io.BytesIO(d)).convert("RGB") for d in data]
        rng = random.Random(0)
        boxes = [torchvision.transforms.RandomResizedCrop.get_params(im, (0.08, 1.0), (3 / 4, 4 / 3)) for im in imgs]
        to_tensor = torchvision.transforms.Compose([torchvision.transforms.ToTensor(),
                                                    torchvision.transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
        crops = [im.crop((j, i, j + w, i + h)).resize((224, 224), Image.BILINEAR) for im, (i, j, h, w) in zip(imgs, boxes)]
        out["ms"] = {
            "decode": best(lambda: [Image.open(io.BytesIO(d)).convert("RGB") for d in data]),
            "resize_bilinear": best(lambda: [im.crop((j, i, j + w, i + h)).resize((224, 224), Image.BILINEAR)
                                             for im, (i, j, h, w) in zip(imgs, boxes)]),
            "resize_bicubic": best(lambda: [im.crop((j, i, j + w, i + h)).resize((224, 224), Image.BICUBIC)
                                            for im, (i, j, h, w) in zip(imgs, boxes)]),
            "to_tensor_normalize": best(lambda: [to_tensor(c) for c in crops]),
        }
        out["images"] = len(data)
        del rng
    else:
        raise SystemExit(f"unknown case {a.case}")
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
