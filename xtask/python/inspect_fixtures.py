"""References of `vit-train inspect` (crates/vit-train/tests/inspect.rs), from timm + numpy.

Run through `cargo xtask fixtures`, after fixtures.py (it reuses case (b), mean_48x64). The
attention weights are timm's (captured at `attn_drop`, eval mode); the definitions, in numpy
float64, are the issue's:
- rollout (Abnar & Zuidema): per layer the heads fused (mean / max / min), optionally the
  lowest `discard` fraction of entries zeroed (never [0, 0]), then 0.5 A + 0.5 I with rows
  renormalised; R = A_L ... A_1; the map is R[0, 1:] (class token) or the mean of R's rows
  (no class token), divided by its maximum;
- mean attention distance: prefix rows/columns dropped, sum_k A[q, k] |c_q - c_k| in input
  pixels, averaged over patch queries q;
- cosine similarity of the patch positions' embeddings; PCA of the embedding filters (SVD of
  the filters centred over D: components V^T rows, explained variance s^2 / sum s^2).

Cases: `inspect_224`, a perturbed ViT at 224x224 (one grey channel, patch 16, class token,
3 blocks of 2 heads); `mean_48x64` (non-square grid, no class token).
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(__file__))
from fixtures import attention_maps, perturb  # noqa: E402


def fuse(a, fusion):
    return {"mean": a.mean(0), "max": a.max(0), "min": a.min(0)}[fusion]


def rollout(maps, fusion="mean", discard=0.0):
    s = maps[0].shape[-1]
    r = np.eye(s)
    for a in maps:
        a = fuse(a, fusion).copy()
        if discard > 0:
            flat = a.reshape(-1)
            n = int(np.floor(s * s * discard))
            order = np.lexsort((np.arange(s * s), flat))
            idx = order[:n]
            flat[idx[idx != 0]] = 0.0
            a = flat.reshape(s, s)
        a = 0.5 * a + 0.5 * np.eye(s)
        a = a / a.sum(-1, keepdims=True)
        r = a @ r
    return r


def rollout_map(r, prefix):
    m = r[0, prefix:] if prefix else r.mean(0)
    return m / m.max()


def distances(maps, prefix, grid, pixels):
    gh, gw = grid
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    centres = np.stack([(rows.reshape(-1) + 0.5) * pixels[0], (cols.reshape(-1) + 0.5) * pixels[1]], -1)
    dist = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    out = []
    for a in maps:
        a = a[:, prefix:, prefix:]
        out.append((a * dist[None]).sum(-1).mean(-1))
    return np.array(out)


def references(model, x, prefix, grid, pixels):
    maps = [m.double().numpy() for m in attention_maps(model, x)]
    refs = {}
    for i in range(len(maps)):
        refs[f"attn.{i}"] = torch.from_numpy(maps[i]).float()
    for b in range(x.shape[0]):
        per = [m[b] for m in maps]
        refs[f"rollout.mean.{b}"] = torch.from_numpy(rollout_map(rollout(per), prefix))
        refs[f"rollout.max_discard_0.9.{b}"] = torch.from_numpy(rollout_map(rollout(per, "max", 0.9), prefix))
        refs[f"rollout.min_discard_0.5.{b}"] = torch.from_numpy(rollout_map(rollout(per, "min", 0.5), prefix))
        refs[f"distance.{b}"] = torch.from_numpy(distances(per, prefix, grid, pixels))
    return refs


def model_refs(model, prefix):
    pe = model.pos_embed[0, prefix:].detach().double().numpy()
    unit = pe / np.linalg.norm(pe, axis=1, keepdims=True)
    w = model.patch_embed.proj.weight.detach().double().numpy()
    x = w.reshape(w.shape[0], -1)
    x = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    k = min(28, len(s))
    return {"posemb_similarity": torch.from_numpy(unit @ unit.T),
            "pca.components": torch.from_numpy(vt[:k].copy()),
            "pca.explained": torch.from_numpy((s ** 2 / (s ** 2).sum())[:k].copy())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)

    torch.manual_seed(0)
    model = VisionTransformer(img_size=224, patch_size=16, in_chans=1, num_classes=5, embed_dim=32, depth=3,
                              num_heads=2, mlp_ratio=2.0, global_pool="token").eval()
    perturb(model, 41)
    x = torch.randn(1, 1, 224, 224, generator=torch.Generator().manual_seed(42))
    refs = references(model, x, 1, (14, 14), (16, 16))
    refs.update(model_refs(model, 1))
    refs["input"] = x
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(args.out, "inspect_224.model.safetensors"))
    save_file({k: v.contiguous().float() for k, v in refs.items() if not k.startswith("attn.")},
              os.path.join(args.out, "inspect_224.refs.safetensors"))
    print(f"inspect_224: {len(refs)} references")

    mean = VisionTransformer(img_size=(48, 64), patch_size=(16, 8), in_chans=3, num_classes=7, embed_dim=32,
                             depth=2, num_heads=4, mlp_ratio=3.0, qkv_bias=True, global_pool="avg",
                             class_token=False, init_values=1e-5).eval()
    mean.load_state_dict(load_file(os.path.join(args.out, "mean_48x64.model.safetensors")))
    x = load_file(os.path.join(args.out, "mean_48x64.io.safetensors"))["input"]
    refs = references(mean, x, 0, (3, 8), (16, 8))
    refs.update(model_refs(mean, 0))
    # timm's own attention weights too (small here): the rollout with discarding is checked on
    # them, where a near-tie between our weights and timm's cannot pick another entry.
    save_file({k: v.contiguous().float() for k, v in refs.items()},
              os.path.join(args.out, "mean_48x64.inspect.safetensors"))
    print(f"mean_48x64: {len(refs)} references")


if __name__ == "__main__":
    main()
