"""vit-train's ImageNet-path references, from torchvision, timm and Pillow themselves.

From `cargo xtask data imagenet-like`'s folder (--src) it copies a small image folder into
--out (val/<class>/<image>: real-photo JPEGs of ImageNet's sizes, a photo as PNG, and the odd
files: CMYK, grayscale, alpha, 16-bit) and writes, for the tests in
crates/vit-train/tests/imagenet.rs:

- eval_transform.json + eval_*.png: timm's `create_transform(is_training=False)` output pixels
  (the PIL image before ToTensor) per case (image, input size, crop_pct, crop_mode,
  interpolation), and normalized values at sampled positions;
- rrc_boxes.json: torchvision `RandomResizedCrop.get_params` boxes with the uniform draws it
  made (torch.empty().uniform_ and torch.randint replaced by recorded draws);
- rrc_*.png: `F.resized_crop` pixels for fixed boxes, bilinear and bicubic;
- eval_model.safetensors / eval_model.toml / eval_reference.json: a small timm ViT and timm's
  own evaluation loop over the folder (ImageFolder + create_transform + DataLoader): loss,
  top-1, top-5, per image the predicted class.
"""
import argparse
import hashlib
import json
import math
import os
import random
import shutil

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform
from timm.models.vision_transformer import VisionTransformer

CLASSES = ["cat", "coffee", "rocket"]
PER_CLASS = 4
ODD = ["odd_cmyk.jpg", "odd_gray.jpg", "odd_alpha.png", "odd_16bit.png"]
# Eval cases whose output pixels are stored: two JPEGs, CMYK, gray, a PNG, and two extras.
KEEP_PIXELS = {0, 4, 12, 13, 16, 17, 18}


def copy_folder(src, out):
    val = os.path.join(out, "val")
    if os.path.exists(val):
        shutil.rmtree(val)
    files = []
    for c in CLASSES:
        os.makedirs(os.path.join(val, c))
        names = sorted(n for n in os.listdir(os.path.join(src, "val", c)) if n.startswith(c))
        for n in names[:PER_CLASS]:
            shutil.copy(os.path.join(src, "val", c, n), os.path.join(val, c, n))
            files.append(f"val/{c}/{n}")
    for n in ODD:
        shutil.copy(os.path.join(src, "val", "cat", n), os.path.join(val, "cat", n))
        files.append(f"val/cat/{n}")
    # A photo as an RGB PNG (lossless: the decoders must agree exactly).
    photo = Image.open(os.path.join(val, "coffee", sorted(os.listdir(os.path.join(val, "coffee")))[0]))
    photo.convert("RGB").crop((0, 0, 301, 257)).save(os.path.join(val, "coffee", "photo_png.png"))
    files.append("val/coffee/photo_png.png")
    return files


def eval_cases(out, files):
    """timm's evaluation transform, pixel by pixel."""
    cases = []
    plain = [(f, (224, 224), 0.9, "center", "bicubic") for f in files]
    extra = [
        (files[0], (224, 224), 0.875, "center", "bilinear"),
        (files[1], (384, 384), 1.0, "squash", "bicubic"),
        (files[2], (160, 224), 0.9, "center", "bilinear"),  # timm's ResizeKeepRatio: bilinear
        (files[3], (224, 224), 0.9, "border", "bicubic"),
        (files[4], (224, 224), 0.95, "center", "lanczos"),
        (files[5], (224, 224), 0.9, "center", "hamming"),
        (files[6], (224, 224), 0.9, "center", "box"),
    ]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rng = np.random.default_rng(0)
    for k, (f, size, crop_pct, mode, interp) in enumerate(plain + extra):
        t = create_transform(input_size=(3, *size), is_training=False, crop_pct=crop_pct,
                             crop_mode=mode, interpolation=interp, mean=mean, std=std)
        geometry = torchvision.transforms.Compose(t.transforms[:-2])  # before ToTensor
        img = Image.open(os.path.join(out, f)).convert("RGB")
        px = geometry(img)
        assert px.size == (size[1], size[0]), (f, px.size)
        raw = px.tobytes()
        # Pixels kept for a few cases (the tolerance tests of the pure-Rust decoder need them);
        # the others by their hash (exact decoders must match it).
        name = None
        if k in KEEP_PIXELS:
            name = f"eval_{k:02d}.png"
            px.save(os.path.join(out, name))
        x = t(img)  # [3, h, w], normalized
        idx = rng.integers(0, x.numel(), size=32)
        cases.append({
            "file": f, "size": list(size), "crop_pct": crop_pct, "crop_mode": mode,
            "interpolation": interp, "out": name, "mean": mean, "std": std,
            "sha256": hashlib.sha256(raw).hexdigest(), "mean_level": float(np.frombuffer(raw, np.uint8).mean()),
            "sample_index": idx.tolist(), "sample_value": x.flatten()[idx].tolist(),
        })
    return cases


def rrc_boxes():
    """get_params with its draws recorded: uniform_ gets u in [0, 1) (a + u (b - a)), randint
    gets u too (floor(u n)); the test replays the same u's."""
    rng = random.Random(7)
    cases = []
    real_empty, real_randint = torch.empty, torch.randint

    class Uniform:
        def __init__(self, draws):
            self.draws = draws

        def uniform_(self, a, b):
            u = rng.random()
            self.draws.append(u)
            a, b = float(a), float(b)
            return torch.tensor([a + u * (b - a)], dtype=torch.float64)

    sizes = [(500, 375), (375, 500), (64, 640), (640, 64), (333, 333), (1000, 30), (17, 400),
             (224, 224), (1, 1), (2, 300)]
    for k in range(200):
        w, h = sizes[k % len(sizes)] if k < 40 else (rng.randint(1, 900), rng.randint(1, 900))
        scale = [(0.08, 1.0), (0.5, 1.0), (0.9, 1.0), (0.01, 0.05), (1.0, 1.0)][k % 5]
        ratio = [(3 / 4, 4 / 3), (0.5, 2.0), (1.0, 1.0), (0.2, 0.3)][k % 4]
        draws = []

        def empty(*a, **kw):
            return Uniform(draws)

        def randint(lo, hi, size=None, **kw):
            u = rng.random()
            draws.append(u)
            return torch.tensor([lo + math.floor(u * (hi - lo))])

        torch.empty, torch.randint = empty, randint
        try:
            img = torch.zeros(3, h, w)
            i, j, bh, bw = torchvision.transforms.RandomResizedCrop.get_params(
                img, list(scale), list(ratio))
        finally:
            torch.empty, torch.randint = real_empty, real_randint
        cases.append({"w": w, "h": h, "scale": scale, "ratio": ratio, "draws": draws,
                      "box": [j, i, bw, bh]})
    return cases


def rrc_pixels(out, files):
    cases = []
    boxes = [(10, 20, 200, 150), (0, 0, 100, 300), (37, 5, 311, 290), (3, 7, 60, 45)]
    for k, f in enumerate(files[:4]):
        img = Image.open(os.path.join(out, f)).convert("RGB")
        x, y, w, h = boxes[k]
        w, h = min(w, img.width - x), min(h, img.height - y)
        for interp in ["bilinear", "bicubic"]:
            mode = TF.InterpolationMode.BILINEAR if interp == "bilinear" else TF.InterpolationMode.BICUBIC
            px = TF.resized_crop(img, y, x, h, w, [224, 224], interpolation=mode)
            name = f"rrc_{k}_{interp}.png"
            px.save(os.path.join(out, name))
            cases.append({"file": f, "box": [x, y, w, h], "interpolation": interp, "out": name})
    return cases


def eval_loop(out):
    torch.manual_seed(0)
    model = VisionTransformer(img_size=224, patch_size=32, num_classes=len(CLASSES), embed_dim=32,
                              depth=1, num_heads=2, mlp_ratio=2.0)
    # A head that separates the classes a little (random weights score near chance).
    with torch.no_grad():
        model.head.weight.mul_(20.0)
        # Stored in f16 (half the bytes); the reference runs the f16 values in f32.
        for p in model.parameters():
            p.copy_(p.half().float())
    model.eval()
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "eval_model.safetensors"))
    with open(os.path.join(out, "eval_model.toml"), "w") as f:
        f.write("# The model of eval_model.safetensors (xtask/python/imagenet_fixtures.py).\n"
                "[model]\nimage_size = [224, 224]\npatch_size = [32, 32]\nnum_classes = 3\n"
                "embed_dim = 32\ndepth = 1\nnum_heads = 2\nmlp_ratio = 2.0\n")
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    t = create_transform(input_size=(3, 224, 224), is_training=False, crop_pct=0.9,
                         interpolation="bicubic", mean=mean, std=std)
    ds = torchvision.datasets.ImageFolder(os.path.join(out, "val"), transform=t)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, num_workers=0)
    losses, top1, top5, preds = [], 0, 0, []
    with torch.inference_mode():
        for x, y in loader:
            logits = model(x)
            losses.append(torch.nn.functional.cross_entropy(logits, y, reduction="sum").item())
            rank = (logits > logits.gather(1, y[:, None])).sum(1)
            top1 += int((rank == 0).sum())
            top5 += int((rank < 5).sum())
            preds += logits.argmax(1).tolist()
    n = len(ds)
    return {"images": n, "loss": sum(losses) / n, "top1": top1 / n, "top5": top5 / n,
            "predictions": preds, "files": [os.path.relpath(p, out) for p, _ in ds.samples],
            "crop_pct": 0.9, "interpolation": "bicubic", "mean": mean, "std": std,
            "timm": __import__("timm").__version__, "torchvision": torchvision.__version__,
            "pillow": Image.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    files = copy_folder(a.src, a.out)
    refs = {
        "pillow": Image.__version__,
        "eval": eval_cases(a.out, files),
        "rrc_boxes": rrc_boxes(),
        "rrc_pixels": rrc_pixels(a.out, files),
    }
    with open(os.path.join(a.out, "references.json"), "w") as f:
        json.dump(refs, f)
    with open(os.path.join(a.out, "eval_reference.json"), "w") as f:
        json.dump(eval_loop(a.out), f, indent=1)
    print(f"imagenet fixtures: {len(files)} images, {len(refs['eval'])} eval cases in {a.out}")


if __name__ == "__main__":
    main()
