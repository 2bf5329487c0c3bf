"""Fixtures of vit-model's foreign-format tests: the same kind of tiny models, saved the way
timm (.pth), the original JAX code (.npz) and HF transformers (ViT, DINOv2) save them, with
the references' own outputs.

Run through `cargo xtask fixtures`, after fixtures.py (it reuses case (a)'s timm weights).
"""
import argparse
import os
import re
import shutil
import tempfile

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from timm.layers.pos_embed import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, _load_weights


def token_model(out):
    """Case (a) of fixtures.py, rebuilt from its saved weights."""
    model = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=48,
                              depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True, global_pool="token")
    model.load_state_dict(load_file(os.path.join(out, "token_32.model.safetensors")))
    return model.eval()


def pth(out, model):
    """torch.save of a wrapped state dict, as training scripts write checkpoints."""
    path = os.path.join(out, "token_32.model.pth")
    torch.save({"model": model.state_dict(), "epoch": 3, "step": torch.tensor(1200)}, path)
    print(f"pth: {path}")


def timm_to_jax(model):
    """timm weights in the layout of the original ViT-B_16.npz (the inverse of timm's _load_weights)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    d = model.embed_dim
    h = model.blocks[0].attn.num_heads
    w = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    for i in range(len(model.blocks)):
        b, j = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        a = j + "MultiHeadDotProductAttention_1/"
        w[j + "LayerNorm_0/scale"], w[j + "LayerNorm_0/bias"] = sd[b + "norm1.weight"], sd[b + "norm1.bias"]
        w[j + "LayerNorm_2/scale"], w[j + "LayerNorm_2/bias"] = sd[b + "norm2.weight"], sd[b + "norm2.bias"]
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for n, name in enumerate(["query", "key", "value"]):
            w[a + f"{name}/kernel"] = qkv_w[n * d:(n + 1) * d].T.reshape(d, h, d // h)
            w[a + f"{name}/bias"] = qkv_b[n * d:(n + 1) * d].reshape(h, d // h)
        w[a + "out/kernel"] = sd[b + "attn.proj.weight"].T.reshape(h, d // h, d)
        w[a + "out/bias"] = sd[b + "attn.proj.bias"]
        for dense, fc in [("Dense_0", "fc1"), ("Dense_1", "fc2")]:
            w[j + f"MlpBlock_3/{dense}/kernel"] = sd[b + f"mlp.{fc}.weight"].T
            w[j + f"MlpBlock_3/{dense}/bias"] = sd[b + f"mlp.{fc}.bias"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def npz(out, model, x, logits):
    """The JAX layout, checked by loading it back with timm's own .npz loader."""
    path = os.path.join(out, "token_32.jax.npz")
    np.savez(path, **timm_to_jax(model))
    check = VisionTransformer(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=48,
                              depth=2, num_heads=3, mlp_ratio=4.0, qkv_bias=True, global_pool="token").eval()
    _load_weights(check, path)
    with torch.no_grad():
        diff = (check(x) - logits).abs().max().item()
    assert diff < 1e-5, f"timm's _load_weights disagrees with the saved npz: {diff}"
    print(f"npz: {path} (timm's _load_weights reproduces the logits, max diff {diff:.1e})")


def resample(out, model):
    """Fine-tuning at a non-square size: timm's resample_abs_pos_embed from 4x4 to 6x8."""
    with torch.no_grad():
        pe = resample_abs_pos_embed(model.pos_embed, new_size=[6, 8], num_prefix_tokens=1)
    save_file({"pos_embed.6x8": pe.contiguous()}, os.path.join(out, "token_32.resample.safetensors"))
    print("resample: 4x4 -> 6x8")


def perturb_hf(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("lambda1"):
                p.copy_(0.5 + 0.1 * noise)
            else:
                p.add_(0.05 * noise)


def hf_vit(out):
    """ViTForImageClassification (safetensors) and ViTModel with its pooler (pytorch_model.bin)."""
    config = transformers.ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                    intermediate_size=96, image_size=32, patch_size=8, num_channels=3,
                                    num_labels=5)
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    perturb_hf(model, 11)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "hf_vit.model.safetensors"))

    torch.manual_seed(1)
    base = transformers.ViTModel(config, add_pooling_layer=True).eval()
    perturb_hf(base, 13)
    with torch.no_grad():
        o = base(pixel_values=x)
    # The Hub's checkpoints carry transformers 4 names: write those, and check that
    # transformers itself loads the file back to the same outputs.
    legacy = {}
    for k, v in base.state_dict().items():
        k = re.sub(r"^layers\.", "encoder.layer.", k)
        for new, old in [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                         ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense"),
                         ("mlp.fc1", "intermediate.dense"), ("mlp.fc2", "output.dense")]:
            k = k.replace(new, old)
        legacy[k] = v
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        torch.save(legacy, os.path.join(tmp, "pytorch_model.bin"))
        back = transformers.ViTModel.from_pretrained(tmp).eval()
        with torch.no_grad():
            diff = (back(pixel_values=x).pooler_output - o.pooler_output).abs().max().item()
        assert diff < 1e-6, f"transformers does not read the legacy names back: {diff}"
        shutil.copy(os.path.join(tmp, "pytorch_model.bin"), os.path.join(out, "hf_vit_base.pytorch_model.bin"))
    save_file({"input": x, "logits": logits, "last_hidden_state": o.last_hidden_state,
               "pooler_output": o.pooler_output}, os.path.join(out, "hf_vit.io.safetensors"))
    print(f"hf vit: logits {tuple(logits.shape)}, pooler {tuple(o.pooler_output.shape)}")


def hf_dinov2(out):
    """Dinov2Model (LayerScale, mask token), at its own size and at a larger one, where HF
    interpolates the position embeddings."""
    config = transformers.Dinov2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                       mlp_ratio=2, image_size=28, patch_size=7, num_channels=3)
    torch.manual_seed(0)
    model = transformers.Dinov2Model(config).eval()
    perturb_hf(model, 21)
    g = torch.Generator().manual_seed(22)
    x = torch.randn(2, 3, 28, 28, generator=g)
    x_big = torch.randn(2, 3, 42, 35, generator=g)
    with torch.no_grad():
        native = model(pixel_values=x).last_hidden_state
        big = model(pixel_values=x_big).last_hidden_state
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "hf_dinov2.model.safetensors"))
    save_file({"input": x, "last_hidden_state": native, "input_42x35": x_big, "last_hidden_state_42x35": big},
              os.path.join(out, "hf_dinov2.io.safetensors"))
    print(f"hf dinov2: {tuple(native.shape)} and {tuple(big.shape)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = token_model(args.out)
    io = load_file(os.path.join(args.out, "token_32.io.safetensors"))
    pth(args.out, model)
    npz(args.out, model, io["input"], io["logits"])
    resample(args.out, model)
    hf_vit(args.out)
    hf_dinov2(args.out)
    print(f"transformers {transformers.__version__}")


if __name__ == "__main__":
    main()
