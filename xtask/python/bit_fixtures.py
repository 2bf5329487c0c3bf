"""Fixtures of vit-model's BiT tests (the paper's ResNet baseline), from timm's resnetv2.py.

Run through `cargo xtask fixtures`. Writes:

- bit_param_counts.json: the parameter count of every timm BiT model vit has a preset of
  (`resnetv2_50x1_bit` ... `resnetv2_152x4_bit`, built on the meta device) and of vit's small
  BiT presets built in timm the same way (`bit_tiny`, `bit_small`, `bit_base`);
- bit_tiny_48 / bit_small_40: two small BiT models (timm `ResNetV2(preact=True,
  stem_type="fixed")`, `StdConv2d(eps=1e-8)`, GroupNormAct with 8 groups so that they stay
  small: stem 16, 1+1+1+1 blocks of widths 32-256, and 2+2+1+1 of 32, 64, 64, 128 (a
  strided projection between equal widths), 10 classes) perturbed away
  from their init (GroupNorm scales around 0.75, every third kernel scaled to a standard
  deviation near 1e-4, where the standardisation's epsilon matters): weights, logits and
  features at two resolutions (one with odd sizes inside the net), every parameter's gradient
  of a cross-entropy loss and the input's gradient;
- bit_tiny_48.bit.npz: bit_tiny_48's weights in the original BiT layout (HWIO kernels,
  `resnet/block{i}/unit{j:02d}/...`), checked by loading it back with timm's own
  `_load_weights`.
"""
import argparse
import json
import os
from functools import partial

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import GroupNormAct, StdConv2d
from timm.models.resnetv2 import ResNetV2

TIMM = ["resnetv2_50x1_bit", "resnetv2_50x3_bit", "resnetv2_101x1_bit", "resnetv2_101x3_bit",
        "resnetv2_152x2_bit", "resnetv2_152x4_bit"]
# vit's small presets (crates/vit-model/src/resnet/bit_config.rs): layers, channels, stem.
SMALL = {
    "bit_tiny": ([1, 1, 1, 1], (128, 256, 512, 1024), 32),
    "bit_small": ([2, 2, 2, 2], (128, 256, 512, 1024), 32),
    "bit_base": ([3, 4, 6, 3], (128, 256, 512, 1024), 32),
}


def bit(layers, channels, stem, classes=1000, groups=32, **kw):
    return ResNetV2(layers=layers, channels=channels, stem_chs=stem, num_classes=classes,
                    stem_type="fixed", conv_layer=partial(StdConv2d, eps=1e-8),
                    norm_layer=partial(GroupNormAct, num_groups=groups), **kw)


def count(m):
    return sum(p.numel() for p in m.parameters())


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(0.75 + 0.2 * noise)
            elif "norm" in name and name.endswith("bias") or name == "head.fc.bias":
                p.copy_(0.1 * noise)
            elif name == "head.fc.weight":
                p.copy_(0.1 * noise)
            else:
                p.add_(0.05 * noise)
            if p.ndim == 4 and name != "head.fc.weight":
                p[::3].mul_(1e-3)


def to_bit_npz(model):
    """The inverse of timm's resnetv2._load_weights: BiT's names, HWIO kernels."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    hwio = lambda k: sd[k].transpose(2, 3, 1, 0)  # noqa: E731
    w = {"resnet/root_block/standardized_conv2d/kernel": hwio("stem.conv.weight"),
         "resnet/group_norm/gamma": sd["norm.weight"], "resnet/group_norm/beta": sd["norm.bias"],
         "resnet/head/conv2d/kernel": hwio("head.fc.weight"), "resnet/head/conv2d/bias": sd["head.fc.bias"]}
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            t, p = f"stages.{i}.blocks.{j}.", f"resnet/block{i + 1}/unit{j + 1:02d}/"
            for r, unit in zip((1, 2, 3), "abc"):
                w[f"{p}{unit}/standardized_conv2d/kernel"] = hwio(f"{t}conv{r}.weight")
                w[f"{p}{unit}/group_norm/gamma"] = sd[f"{t}norm{r}.weight"]
                w[f"{p}{unit}/group_norm/beta"] = sd[f"{t}norm{r}.bias"]
            if block.downsample is not None:
                w[f"{p}a/proj/standardized_conv2d/kernel"] = hwio(f"{t}downsample.conv.weight")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def case(out, name, model, sizes, seed):
    model.eval()
    io = {}
    for k, (h, w) in enumerate(sizes):
        x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed + k))
        with torch.no_grad():
            feats = model.forward_features(x)
            logits = model.forward_head(feats)
        io[f"input.{h}x{w}"], io[f"features.{h}x{w}"], io[f"logits.{h}x{w}"] = x, feats, logits
        print(f"{name} at {h}x{w}: features {tuple(feats.shape)}, |logits| max {logits.abs().max():.3f}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, f"{name}.model.safetensors"))
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out, f"{name}.io.safetensors"))
    # Gradients at the first size (train mode: no dropout in these models, GroupNorm has no
    # running statistics, so train and eval agree).
    h, w = sizes[0]
    x = io[f"input.{h}x{w}"].clone().requires_grad_(True)
    model.train()
    model.zero_grad()
    labels = torch.arange(2) % model.num_classes
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    grads = {f"grad.{k}": p.grad.detach().contiguous() for k, p in model.named_parameters()}
    grads["grad.input"] = x.grad.detach().contiguous()
    grads["labels"] = labels.float()
    grads["loss"] = loss.detach().reshape(1)
    save_file(grads, os.path.join(out, f"{name}.grads.safetensors"))
    model.eval()
    print(f"{name}: loss {loss.item():.4f}, {len(grads) - 3} parameter gradients")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    counts = {n: count(timm.create_model(n, pretrained=False, device="meta")) for n in TIMM}
    for n, (layers, channels, stem) in SMALL.items():
        counts[n] = count(bit(layers, channels, stem, device="meta"))
    with open(os.path.join(args.out, "bit_param_counts.json"), "w") as f:
        json.dump(counts, f, indent=1)
        f.write("\n")
    print(counts)

    torch.manual_seed(0)
    tiny = bit([1, 1, 1, 1], (32, 64, 128, 256), 16, classes=10, groups=8)
    perturb(tiny, 1)
    case(args.out, "bit_tiny_48", tiny, [(48, 48), (37, 53)], 10)
    npz = os.path.join(args.out, "bit_tiny_48.bit.npz")
    np.savez(npz, **to_bit_npz(tiny))
    back = bit([1, 1, 1, 1], (32, 64, 128, 256), 16, classes=10, groups=8)
    back.load_pretrained(npz)
    for (k, a), (_, b) in zip(tiny.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), f"{k} differs after timm's _load_weights"
    print("bit_tiny_48.bit.npz: timm's _load_weights reads back every weight")

    small = bit([2, 2, 1, 1], (32, 64, 64, 128), 16, classes=10, groups=8)
    perturb(small, 2)
    case(args.out, "bit_small_40", small, [(40, 40), (33, 47)], 20)


if __name__ == "__main__":
    main()
