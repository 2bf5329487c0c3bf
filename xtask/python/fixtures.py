"""Writes the reference fixtures of vit-model's parity tests, from timm / PyTorch / scipy.

Run through `cargo xtask fixtures` (which makes the venv). Every model's weights are perturbed
away from their init (a zero head or unit LayerNorm proves nothing), then the model's
state dict is saved as timm saves it, and the inputs and reference outputs beside it.
"""
import argparse
import json
import os

import numpy as np
import scipy.ndimage
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers.pos_embed import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".gamma"):
                p.copy_(0.5 + 0.1 * noise)
            else:
                p.add_(0.05 * noise)


def attention_maps(model, x):
    """Each block's softmax attention weights, captured at the attn_drop input."""
    maps = []
    hooks = []
    for blk in model.blocks:
        blk.attn.fused_attn = False
        hooks.append(blk.attn.attn_drop.register_forward_hook(lambda m, i, o: maps.append(i[0].detach().clone())))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return maps


def save_case(out, name, model, x, extra_io=None):
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
    maps = attention_maps(model, x)
    io = {"input": x, "features": features, "logits": logits}
    for i, m in enumerate(maps):
        io[f"attn.{i}"] = m
    io.update(extra_io or {})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"{name}.model.safetensors"))
    save_file({k: v.contiguous().float() for k, v in io.items()}, os.path.join(out, f"{name}.io.safetensors"))
    print(f"{name}: logits {tuple(logits.shape)}, |logits| max {logits.abs().max():.3f}")


def save_grads(out, name, model, x):
    """Gradients of the mean cross-entropy against fixed labels, for every parameter."""
    model.train()
    for blk in model.blocks:
        blk.attn.fused_attn = True
    model.zero_grad()
    labels = torch.arange(x.shape[0]) % model.num_classes
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    grads = {f"grad.{k}": p.grad.detach().contiguous() for k, p in model.named_parameters()}
    grads["labels"] = labels.float()
    grads["loss"] = loss.detach().reshape(1)
    save_file(grads, os.path.join(out, f"{name}.grads.safetensors"))
    model.eval()
    print(f"{name}: loss {loss.item():.4f}, {len(grads) - 2} gradients")


def case_token(out):
    """(a) 2 blocks at 32x32, patch 8, token pooling, 10 classes."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=48,
                              depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True, global_pool="token")
    perturb(model, 1)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    save_case(out, "token_32", model, x)
    save_grads(out, "token_32", model, x)


def case_mean(out):
    """(b) non-square 48x64 image, patch (16, 8), mean pooling, no class token, LayerScale."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=(48, 64), patch_size=(16, 8), in_chans=3, num_classes=7, embed_dim=32,
                              depth=2, num_heads=4, mlp_ratio=3.0, qkv_bias=True, global_pool="avg",
                              class_token=False, init_values=1e-5)
    perturb(model, 3)
    x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(4))
    save_case(out, "mean_48x64", model, x)


def case_pre_logits(out):
    """(d) a pre-logits layer (Linear + tanh, `representation_size`), as old timm / JAX had:
    timm's pooled features, then torch Linear + tanh + head."""
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=16, in_chans=1, num_classes=0, embed_dim=24,
                              depth=1, num_heads=2, mlp_ratio=2.0, qkv_bias=False)
    perturb(model, 5)
    model.eval()
    g = torch.Generator().manual_seed(6)
    fc = torch.nn.Linear(24, 16)
    head = torch.nn.Linear(16, 5)
    with torch.no_grad():
        for p in list(fc.parameters()) + list(head.parameters()):
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    x = torch.randn(3, 1, 32, 32, generator=g)
    with torch.no_grad():
        logits = head(torch.tanh(fc(model(x))))
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    sd.update({"pre_logits.fc.weight": fc.weight, "pre_logits.fc.bias": fc.bias,
               "head.weight": head.weight, "head.bias": head.bias})
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, os.path.join(out, "pre_logits.model.safetensors"))
    save_file({"input": x, "logits": logits}, os.path.join(out, "pre_logits.io.safetensors"))
    print(f"pre_logits: logits {tuple(logits.shape)}")


def jax_zoom(grid, new):
    """vit_jax/checkpoint.py interpolate_posembed, per axis (the original is square only)."""
    gh, gw, _ = grid.shape
    zoom = (new[0] / gh, new[1] / gw, 1)
    return scipy.ndimage.zoom(grid, zoom, order=1)


def case_resample(out):
    """(c) a 7x7 grid (+ class token) resampled to 10x12, 12x12 and down to 4x5, every mode."""
    g = torch.Generator().manual_seed(7)
    d = 8
    posemb = torch.randn(1, 1 + 49, d, generator=g)
    tensors = {"posemb": posemb}
    for new in [(10, 12), (12, 12), (4, 5)]:
        tag = f"{new[0]}x{new[1]}"
        tensors[f"timm.{tag}"] = resample_abs_pos_embed(posemb, new_size=list(new), num_prefix_tokens=1)
        for mode, interp in [("bilinear", "bilinear"), ("nearest", "nearest")]:
            tensors[f"{mode}.{tag}"] = resample_abs_pos_embed(
                posemb, new_size=list(new), num_prefix_tokens=1, interpolation=interp, antialias=False)
        # HF transformers ViTEmbeddings.interpolate_pos_encoding.
        grid = posemb[:, 1:].reshape(1, 7, 7, d).permute(0, 3, 1, 2)
        hf = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
        tensors[f"hf.{tag}"] = torch.cat([posemb[:, :1], hf.permute(0, 2, 3, 1).reshape(1, -1, d)], dim=1)
        zoomed = jax_zoom(posemb[0, 1:].reshape(7, 7, d).numpy().astype(np.float64), new)
        jax = np.concatenate([posemb[0, :1].numpy(), zoomed.reshape(-1, d)], axis=0)[None]
        tensors[f"jax.{tag}"] = torch.from_numpy(jax.astype(np.float32))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "resample.safetensors"))
    print(f"resample: {len(tensors) - 1} references")


PRESETS = [f"{stem}_{res}" for stem in [
    "vit_tiny_patch16", "vit_small_patch16", "vit_small_patch32", "vit_base_patch16", "vit_base_patch32",
    "vit_base_patch8", "vit_large_patch16", "vit_large_patch32", "vit_large_patch14", "vit_huge_patch14",
] for res in (224, 384)] + [f"{stem}_{res}" for stem in [
    # The hybrids (ResNet + ViT, paper section 3.1).
    "vit_tiny_r_s16_p8", "vit_small_r26_s32", "vit_base_r26_s32", "vit_base_r50_s16", "vit_large_r50_s32",
] for res in (224, 384)]


def param_counts(out):
    """timm's parameter count of every preset timm registers, with a 1000-class head (meta device)."""
    counts = {}
    known = set(timm.list_models("vit_*"))
    for name in PRESETS:
        if name not in known:
            continue
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=1000)
        counts[name] = sum(p.numel() for p in model.parameters())
    with open(os.path.join(out, "param_counts.json"), "w") as f:
        json.dump({"timm": timm.__version__, "counts": counts}, f, indent=1, sort_keys=True)
    print(f"param counts: {len(counts)} presets from timm {timm.__version__}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    case_token(args.out)
    case_mean(args.out)
    case_pre_logits(args.out)
    case_resample(args.out)
    param_counts(args.out)


if __name__ == "__main__":
    main()
