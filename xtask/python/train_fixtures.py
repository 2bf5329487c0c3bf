"""Fixtures of vit-train's transfer and training tests, from timm: layer-wise LR decay scales
(timm.optim.param_groups_layer_decay) for a model with a final norm and one with fc_norm,
timm's logits for a PNG image predicted with pretrained weights (a ViT, and a BiT ResNet with
its family's transform), and timm's ModelEmaV3 (the weights' moving average) over a known
sequence of weights.

Run through `cargo xtask fixtures`, after fixtures.py and bit_fixtures.py (it reuses case (a)'s
and bit_tiny_48's timm weights).
"""
import argparse
import json
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer
from timm.optim._param_groups import param_groups_layer_decay
from timm.utils.model_ema import ModelEmaV3


def layer_scales(model, decay):
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=decay)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-fixtures", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)

    token = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=48,
                              depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True, global_pool="token")
    mean = VisionTransformer(img_size=(48, 64), patch_size=(16, 8), in_chans=3, num_classes=7, embed_dim=32,
                             depth=2, num_heads=4, mlp_ratio=3.0, qkv_bias=True, global_pool="avg",
                             class_token=False, init_values=1e-5)
    scales = {"token_32": layer_scales(token, 0.75), "mean_48x64": layer_scales(mean, 0.75)}
    with open(os.path.join(args.out, "layer_decay.json"), "w") as f:
        json.dump(scales, f, indent=1, sort_keys=True)
    print(f"layer decay: {sum(len(v) for v in scales.values())} parameter scales")

    # predict --weights: timm's evaluation transform of the model's default config (crop_pct
    # 0.9, bicubic: 32 px -> 35 px, centre crop 32), as `predict` applies it.
    token.load_state_dict(load_file(os.path.join(args.model_fixtures, "token_32.model.safetensors")))
    token.eval()
    rng = np.random.default_rng(5)
    png = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(png).save(os.path.join(args.out, "predict_32.png"))
    from timm.data import create_transform
    t = create_transform(input_size=(3, 32, 32), is_training=False, crop_pct=0.9,
                         interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3)
    x = t(Image.open(os.path.join(args.out, "predict_32.png")).convert("RGB"))[None]
    with torch.no_grad():
        logits = token(x)[0].tolist()
    with open(os.path.join(args.out, "predict_32.json"), "w") as f:
        json.dump({"logits": logits, "mean": 0.5, "std": 0.5}, f, indent=1)
    print("predict: timm logits for predict_32.png")
    bit_predict_fixture(args)
    ema_fixture(args.out)


def bit_predict_fixture(args):
    """predict --weights with a BiT ResNet: bit_fixtures.py's bit_tiny_48 through resnetv2.py's
    `_cfg` transform (crop_pct 0.875, bilinear, mean and std 0.5: 61x50 -> 54 px short side,
    centre crop 48) on an RGB PNG that is not square."""
    from functools import partial

    from timm.data import create_transform
    from timm.layers import GroupNormAct, StdConv2d
    from timm.models.resnetv2 import ResNetV2

    model = ResNetV2(layers=[1, 1, 1, 1], channels=(32, 64, 128, 256), stem_chs=16, num_classes=10,
                     stem_type="fixed", conv_layer=partial(StdConv2d, eps=1e-8),
                     norm_layer=partial(GroupNormAct, num_groups=8))
    model.load_state_dict(load_file(os.path.join(args.model_fixtures, "bit_tiny_48.model.safetensors")))
    model.eval()
    rng = np.random.default_rng(7)
    # Smooth, so that the bilinear resize's rounding to 8 bits stays far below the tolerance.
    yy, xx = np.mgrid[0:50, 0:61]
    png = np.stack([(xx * 4) % 256, (yy * 5) % 256, (xx * yy) % 256], -1).astype(np.uint8)
    png = np.clip(png.astype(int) + rng.integers(-8, 9, size=png.shape), 0, 255).astype(np.uint8)
    path = os.path.join(args.out, "predict_bit_48.png")
    Image.fromarray(png).save(path)
    t = create_transform(input_size=(3, 48, 48), is_training=False, crop_pct=0.875,
                         interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)
    x = t(Image.open(path).convert("RGB"))[None]
    with torch.no_grad():
        logits = model(x)[0].tolist()
    with open(os.path.join(args.out, "predict_bit_48.json"), "w") as f:
        json.dump({"logits": logits, "input_shape": list(x.shape)}, f, indent=1)
    print(f"predict: timm logits for predict_bit_48.png (input {tuple(x.shape)})")


def ema_case(decay, use_warmup, steps):
    """ModelEmaV3 as timm's train.py drives it (`update(model, step=num_updates)` after each
    optimiser step) over weights that equal `k` everywhere after step k."""
    model = torch.nn.Linear(1, 1, bias=False)
    ema = ModelEmaV3(model, decay=decay, use_warmup=use_warmup)
    decays, values = [], []
    for k in range(1, steps + 1):
        with torch.no_grad():
            model.weight.fill_(float(k))
        decays.append(ema.get_decay(k))
        ema.update(model, step=k)
        values.append(ema.module.weight.item())
    return {"decay": decay, "warmup": use_warmup, "decays": decays, "values": values}


def ema_fixture(out):
    cases = [ema_case(0.9, False, 12), ema_case(0.99, True, 12)]
    with open(os.path.join(out, "model_ema.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(f"model ema: {len(cases)} cases")


if __name__ == "__main__":
    main()
