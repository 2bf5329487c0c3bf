"""Fixtures of vit-model's hybrid tests (ResNet + ViT, paper section 3.1), from timm.

Run through `cargo xtask fixtures`, after fixtures.py. Small hybrids built the way timm's
`vision_transformer_hybrid.py` builds them (ResNetV2 without pre-activation, StdConv2dSame
with eps 1e-8, GroupNormAct with 32 groups, "SAME" padding), perturbed away from their init
(GroupNorm scales around 0.5-1, not timm's zero on each block's last norm; every third
conv kernel scaled to a standard deviation near 1e-4, where the standardisation's epsilon
changes the result), then:

- hybrid_64: two stages (1 + 1 blocks, stem 32), 64x64 input, 2x2 patches of the feature map:
  logits, features and every parameter's gradient; the same weights at 60x92 (odd sizes
  inside the net, so symmetric and asymmetric SAME padding both occur) with the position
  embeddings resampled by timm;
- hybrid_stem: the stem-only backbone of vit_tiny_r_s16_p8, 4x4 patches;
- hybrid_64.jax.npz: hybrid_64 in the layout of the JAX `R50+ViT-B_16.npz`, checked by
  loading it back with timm's own `_load_weights`, and the logits of the JAX model (the JAX
  code's epsilons: kernels standardised as (w - mean) / (std + 1e-5), GroupNorm eps 1e-6).
"""
import argparse
import os
import sys
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import GroupNormAct, HybridEmbed, StdConv2dSame
from timm.layers.pos_embed import resample_abs_pos_embed
from timm.models.resnetv2 import ResNetV2, create_resnetv2_stem
from timm.models.vision_transformer import VisionTransformer, _load_weights

sys.path.insert(0, os.path.dirname(__file__))
from fixtures import attention_maps  # noqa: E402
from foreign_fixtures import timm_to_jax  # noqa: E402

CONV = partial(StdConv2dSame, eps=1e-8)


def backbone(layers, stem):
    if layers:
        return ResNetV2(layers=layers, channels=tuple(4 * stem * 2 ** i for i in range(len(layers))),
                        stem_chs=stem, num_classes=0, global_pool="", in_chans=3, preact=False,
                        stem_type="same", conv_layer=CONV)
    return create_resnetv2_stem(3, out_chs=stem, stem_type="same", preact=False, conv_layer=CONV)


def hybrid(img, patch, layers=(1, 1), stem=32, classes=10, depth=2):
    return VisionTransformer(img_size=img, patch_size=patch, num_classes=classes, embed_dim=48, depth=depth,
                             num_heads=3, mlp_ratio=4.0, qkv_bias=True, global_pool="token",
                             embed_layer=partial(HybridEmbed, backbone=backbone(layers, stem)))


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(0.75 + 0.2 * noise)
            elif "norm" in name and name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.add_(0.05 * noise)
            if "backbone" in name and p.ndim == 4:
                # Every third kernel with a standard deviation near 1e-4, where both
                # epsilons matter (timm's 1e-8 inside the sqrt, JAX's 1e-5 outside).
                p[::3].mul_(1e-3)


def outputs(model, x):
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        return features, model.forward_head(features)


def save_case(out, name, model, x):
    features, logits = outputs(model, x)
    io = {"input": x, "features": features, "logits": logits}
    for i, m in enumerate(attention_maps(model, x)):
        io[f"attn.{i}"] = m
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"{name}.model.safetensors"))
    save_file({k: v.contiguous() for k, v in io.items()}, os.path.join(out, f"{name}.io.safetensors"))
    print(f"{name}: logits {tuple(logits.shape)}, |logits| max {logits.abs().max():.3f}")
    return logits


def save_grads(out, name, model, x):
    model.train()
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


def resampled(out, model):
    """The same weights at 60x92: the 4x4 grid of position embeddings resampled to 4x6."""
    big = hybrid((60, 92), 2)
    sd = model.state_dict()
    assert tuple(big.patch_embed.grid_size) == (4, 6), big.patch_embed.grid_size
    sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=[4, 6], num_prefix_tokens=1)
    big.load_state_dict(sd)
    x = torch.randn(2, 3, 60, 92, generator=torch.Generator().manual_seed(23))
    _, logits = outputs(big, x)
    save_file({"input": x, "logits": logits}, os.path.join(out, "hybrid_64.resample.io.safetensors"))
    print(f"hybrid_64 at 60x92: |logits| max {logits.abs().max():.3f}")


def hybrid_to_jax(model):
    """The JAX layout of a hybrid (the inverse of timm's _load_weights): HWIO kernels."""
    w = timm_to_jax(model)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    hwio = lambda k: sd[k].transpose(2, 3, 1, 0)  # noqa: E731
    bb = "patch_embed.backbone."
    w["conv_root/kernel"] = hwio(bb + "stem.conv.weight")
    w["gn_root/scale"], w["gn_root/bias"] = sd[bb + "stem.norm.weight"], sd[bb + "stem.norm.bias"]
    for i, stage in enumerate(model.patch_embed.backbone.stages):
        for j, block in enumerate(stage.blocks):
            t, p = f"{bb}stages.{i}.blocks.{j}.", f"block{i + 1}/unit{j + 1}/"
            for r in (1, 2, 3):
                w[f"{p}conv{r}/kernel"] = hwio(f"{t}conv{r}.weight")
                w[f"{p}gn{r}/scale"], w[f"{p}gn{r}/bias"] = sd[f"{t}norm{r}.weight"], sd[f"{t}norm{r}.bias"]
            if block.downsample is not None:
                w[f"{p}conv_proj/kernel"] = hwio(f"{t}downsample.conv.weight")
                w[f"{p}gn_proj/scale"] = sd[f"{t}downsample.norm.weight"]
                w[f"{p}gn_proj/bias"] = sd[f"{t}downsample.norm.bias"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def jax_std_conv_forward(self, x):
    """models_resnet.py StdConv: (w - mean) / (std + 1e-5), std the biased one; SAME padding."""
    from timm.layers.padding import pad_same
    if self.same_pad:  # else timm pads statically, in F.conv2d
        x = pad_same(x, self.kernel_size, self.stride, self.dilation)
    w = self.weight
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    std = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True).sqrt()
    return F.conv2d(x, (w - mean) / (std + 1e-5), self.bias, self.stride, self.padding, self.dilation, self.groups)


def jax_npz(out, model, x, logits):
    path = os.path.join(out, "hybrid_64.jax.npz")
    np.savez(path, **hybrid_to_jax(model))
    check = hybrid(64, 2).eval()
    _load_weights(check, path)
    _, got = outputs(check, x)
    diff = (got - logits).abs().max().item()
    assert diff < 1e-5, f"timm's _load_weights disagrees with the saved npz: {diff}"
    # The JAX model itself: its StdConv and flax GroupNorm epsilons.
    for m in check.modules():
        if isinstance(m, StdConv2dSame):
            m.forward = partial(jax_std_conv_forward, m)
        elif isinstance(m, GroupNormAct):
            m.eps = 1e-6
    _, jax_logits = outputs(check, x)
    save_file({"input": x, "logits": jax_logits}, os.path.join(out, "hybrid_64.jax_io.safetensors"))
    print(f"npz: {path} (timm's _load_weights reproduces the logits, max diff {diff:.1e}; "
          f"JAX epsilons move them by {(jax_logits - logits).abs().max().item():.1e})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)

    torch.manual_seed(0)
    model = hybrid(64, 2)
    perturb(model, 21)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(22))
    logits = save_case(args.out, "hybrid_64", model, x)
    save_grads(args.out, "hybrid_64", model, x)
    resampled(args.out, model)
    jax_npz(args.out, model, x, logits)

    torch.manual_seed(1)
    stem = hybrid(32, 4, layers=(), classes=5, depth=1)
    perturb(stem, 31)
    save_case(args.out, "hybrid_stem", stem, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(32)))


if __name__ == "__main__":
    main()
