"""PyTorch + timm side of `cargo xtask bench`: one case per process, one JSON line out.

Same shapes as crates/vit-train/examples/bench.rs: fp32 (or --dtype bf16/f16: the model and
data in that type, as Burn's all-half device setting; --autocast for CUDA autocast instead),
on the CPU with torch.set_num_threads(--threads) or on --device cuda,
training = forward + cross-entropy backward + torch.optim.AdamW step (model.train(), no
dropout in these models), inference = model.eval() under torch.inference_mode(); warm-up
steps, then the median of the timed ones.
"""
import argparse
import json
import resource
import time

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

CASES = {
    "cifar-train": ("cifar", 128, True),
    "cifar-infer": ("cifar", 128, False),
    "ti16-train": ("vit_tiny_patch16_224", 32, True),
    "ti16-infer": ("vit_tiny_patch16_224", 32, False),
    "b16-infer": ("vit_base_patch16_224", 8, False),
    "r26s32-infer": ("vit_small_r26_s32_224", 8, False),
    "r26s32-train": ("vit_small_r26_s32_224", 16, True),
    # The paper's ResNet baseline, BiT-M R50x1 (vit's preset of the same name).
    "resnet50-infer": ("resnetv2_50x1_bit", 8, False),
    "resnet50-train": ("resnetv2_50x1_bit", 16, True),
    "b16-train-b64": ("vit_base_patch16_224", 64, True),
    "b16-infer-b64": ("vit_base_patch16_224", 64, False),
    # The GPU pack's cases (.gpu/run.sh): the headline recipe's step (configs/b16.toml: dropout
    # 0.1, AdamW with weight decay 0.3 off biases/norms/tokens, clipping at 1) and inference.
    "b16-trainer-b64": ("vit_base_patch16_224", 64, True),
    "s16-infer-b64": ("vit_small_patch16_224", 64, False),
    "r26s32-infer-b64": ("vit_small_r26_s32_224", 64, False),
}


def model(name, **kwargs):
    if name == "cifar":
        return VisionTransformer(img_size=32, patch_size=4, num_classes=10, embed_dim=192, depth=6,
                                 num_heads=3, mlp_ratio=4.0), (3, 32, 32)
    return timm.create_model(name, pretrained=False, num_classes=1000, **kwargs), (3, 224, 224)


def read_idx(path):
    """An IDX file (gzip) as a numpy array, as vit-train's idx.rs reads it."""
    import gzip
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fmnist_setup(lr=2e-3):
    """The main job's data, model and optimizer (configs/fashion-mnist.toml) as timm + PyTorch
    would run them: the same ViT, AdamW (no weight decay on biases, norms, tokens, position
    embedding), batch 128, zero-padded random crop (2) and horizontal flip, one DataLoader
    worker over the same IDX files. Returns (loader, model, optimizer)."""
    import torchvision.transforms.v2 as T
    root = "datasets/fashion-mnist"
    images = torch.from_numpy(read_idx(f"{root}/train-images-idx3-ubyte.gz").copy())
    labels = torch.from_numpy(read_idx(f"{root}/train-labels-idx1-ubyte.gz").astype("int64"))
    aug = T.Compose([T.RandomCrop(28, padding=2), T.RandomHorizontalFlip(),
                     T.ToDtype(torch.float32, scale=True), T.Normalize([0.2860], [0.3530])])

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return aug(images[i].unsqueeze(0)), labels[i]

    loader = torch.utils.data.DataLoader(Data(), batch_size=128, shuffle=True, drop_last=True,
                                         num_workers=1, persistent_workers=True)
    m = VisionTransformer(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64,
                          depth=4, num_heads=4, mlp_ratio=2.0, global_pool="avg")
    m.train()
    decay = [p for n, p in m.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in m.named_parameters() if p.ndim <= 1 or "pos_embed" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, eps=1e-8)
    return loader, m, opt


def fmnist_train(args):
    """The main job's step (fmnist_setup) with clipping at global norm 1; a step's time
    includes waiting for its batch."""
    loader, m, opt = fmnist_setup()
    batches = iter(loader)

    def step():
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    return timed(args.warmup, args.steps, step), 128


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(warmup, steps, fn):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--autocast", action="store_true")
    ap.add_argument("--compile", action="store_true", help="the model through torch.compile")
    ap.add_argument("--batch", type=int, help="another batch size for the model cases")
    ap.add_argument("--image-size", type=int, help="another input size for the timm cases")
    args = ap.parse_args()
    dev = torch.device(args.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    cast = torch.float32 if args.autocast else dtype
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = 0
    if args.case == "fmnist-train":
        s, images = fmnist_train(args)
        gflop = 0.0
    elif args.case == "gemm":
        n = 2048
        a, b = torch.randn(n, n, device=dev, dtype=cast), torch.randn(n, n, device=dev, dtype=cast)
        s = timed(args.warmup, args.steps, lambda: torch.mm(a, b))
        gflop = 2 * n ** 3 / 1e9
    else:
        name, batch, train = CASES[args.case]
        batch = args.batch or batch
        trainer = args.case == "b16-trainer-b64"
        extra = {"drop_rate": 0.1} if trainer else {}
        # (A ViT is built at its size; a ResNet takes any.)
        if args.image_size and name.startswith("vit"):
            extra["img_size"] = args.image_size
        m, shape = model(name, **extra)
        if args.image_size and name != "cifar":
            shape = (3, args.image_size, args.image_size)
        m = m.to(device=dev, dtype=cast)
        net = torch.compile(m) if args.compile else m
        x = torch.randn(batch, *shape, device=dev, dtype=cast)
        images = batch

        def autocast():
            return torch.autocast(dev.type, dtype=dtype, enabled=args.autocast)
        if train:
            m.train()
            y = torch.arange(batch, device=dev) % m.num_classes
            if trainer:
                decay = [p for n, p in m.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
                rest = [p for n, p in m.named_parameters() if p.ndim <= 1 or "pos_embed" in n]
                opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.3},
                                         {"params": rest, "weight_decay": 0.0}], lr=1e-4, eps=1e-8)
            else:
                opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

            def step():
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = F.cross_entropy(net(x), y)
                loss.backward()
                if trainer:
                    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
                opt.step()
            s = timed(args.warmup, args.steps, step)
        else:
            m.eval()

            def step():
                with torch.inference_mode(), autocast():
                    net(x)
            s = timed(args.warmup, args.steps, step)
        gflop = 0.0
    peak_gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": "torch", "backend": f"torch {torch.__version__}", "case": args.case,
                      "seconds": s, "img_s": images / s if images else 0.0,
                      "gflop_s": gflop / s if gflop else 0.0, "peak_rss_mib": rss,
                      "threads": args.threads, "steps": args.steps, "timm": timm.__version__,
                      "device": str(dev), "dtype": args.dtype + ("-autocast" if args.autocast else ""),
                      "compile": args.compile, "batch": images,
                      "peak_gpu_mib": peak_gpu}))


if __name__ == "__main__":
    main()
