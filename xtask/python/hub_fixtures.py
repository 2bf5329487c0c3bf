"""A Hugging Face cache for vit-train's model-id tests (crates/vit-train/tests/hub.rs).

The cache (--out, what HF_HUB_CACHE points at in the tests) is laid out as huggingface_hub lays
it out: `models--ORG--NAME/{refs,snapshots,blobs}`, snapshot files as relative symlinks into
`blobs/` named by their git blob sha1 (regular files) or sha256 (LFS files), `refs/<rev>`
holding the commit. huggingface_hub's own `try_to_load_from_cache` and `scan_cache_dir` then
read it back, and what they see is written into --expected with the references:

- `timm/vit_token32_test`: timm's `save_for_hf` of the token_32 fixture model
  (vit_tiny_patch16_224 with model_args img_size 32, patch 8, D 48, depth 2, heads 3; 10 classes,
  label_names, pretrained_cfg with input 32, crop_pct 0.95, bicubic); `main` has
  model.safetensors, `v0` (an older commit) only pytorch_model.bin and other label names;
- `google/vit-test`: HF transformers' ViTForImageClassification of the hf_vit fixture
  (`save_pretrained`'s config.json with id2label, ViTImageProcessor's preprocessor_config.json).

Expected: timm's `resolve_data_config` for the timm repo's pretrained_cfg, the labels, and the
paths huggingface_hub finds.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import tempfile

import huggingface_hub
import timm
import torch
import transformers
from safetensors.torch import load_file
from timm.data import resolve_data_config
from timm.models._hub import save_for_hf


def blob_name(data: bytes, lfs: bool) -> str:
    if lfs:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(cache, repo, commit, files, refs):
    root = os.path.join(cache, "models--" + repo.replace("/", "--"))
    os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    snap = os.path.join(root, "snapshots", commit)
    os.makedirs(snap, exist_ok=True)
    for name, data in files.items():
        h = blob_name(data, name.endswith((".safetensors", ".bin")))
        blob = os.path.join(root, "blobs", h)
        with open(blob, "wb") as f:
            f.write(data)
        link = os.path.join(snap, name)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    for r in refs:
        with open(os.path.join(root, "refs", r), "w") as f:
            f.write(commit)


def commit_of(text):
    return hashlib.sha1(text.encode()).hexdigest()


def timm_repo(cache, fixtures):
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                              embed_dim=48, depth=2, num_heads=3, num_classes=10)
    model.load_state_dict(load_file(os.path.join(fixtures, "token_32.model.safetensors")))
    cfg = dict(model.pretrained_cfg)
    cfg.update(input_size=(3, 32, 32), crop_pct=0.95, interpolation="bicubic", crop_mode="center",
               mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    model.pretrained_cfg = cfg
    labels = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray",
              "stingray", "cock", "hen", "ostrich"]
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    out = {}
    for rev, safe, names in [("main", True, labels), ("v0", False, [f"old_{i}" for i in range(10)])]:
        with tempfile.TemporaryDirectory() as tmp:
            save_for_hf(model, tmp, model_config={"label_names": names}, model_args=args,
                        safe_serialization=safe)
            files = {n: open(os.path.join(tmp, n), "rb").read() for n in sorted(os.listdir(tmp))}
        commit = commit_of(f"timm {rev}")
        add_snapshot(cache, "timm/vit_token32_test", commit, files, [rev])
        out[rev] = {"commit": commit, "labels": names, "files": sorted(files)}
    data = resolve_data_config(pretrained_cfg=cfg)
    out["data_config"] = {"input_size": list(data["input_size"]), "interpolation": data["interpolation"],
                          "mean": list(data["mean"]), "std": list(data["std"]),
                          "crop_pct": data["crop_pct"], "crop_mode": data["crop_mode"]}
    return out


def hf_repo(cache, fixtures):
    labels = {i: f"hf_class_{i}" for i in range(5)}
    config = transformers.ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                                    intermediate_size=96, image_size=32, patch_size=8, num_channels=3,
                                    num_labels=5, id2label=labels, label2id={v: k for k, v in labels.items()},
                                    architectures=["ViTForImageClassification"])
    proc = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3,
                                          image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        proc.save_pretrained(tmp)
        shutil.copy(os.path.join(fixtures, "hf_vit.model.safetensors"), os.path.join(tmp, "model.safetensors"))
        # transformers reads the repo back (the fixture's weights under this config).
        back = transformers.ViTForImageClassification.from_pretrained(tmp).eval()
        assert back.config.id2label[3] == "hf_class_3"
        files = {n: open(os.path.join(tmp, n), "rb").read() for n in sorted(os.listdir(tmp))}
    commit = commit_of("hf main")
    add_snapshot(cache, "google/vit-test", commit, files, ["main"])
    return {"main": {"commit": commit, "labels": [labels[i] for i in range(5)], "files": sorted(files)},
            "processor": {"size": [32, 32], "resample": "bicubic"}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", required=True, help="vit-model's fixtures (token_32, hf_vit)")
    ap.add_argument("--out", required=True, help="the cache folder to (re)create")
    ap.add_argument("--expected", required=True)
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    expected = {"timm/vit_token32_test": timm_repo(a.out, a.fixtures),
                "google/vit-test": hf_repo(a.out, a.fixtures)}
    # What huggingface_hub itself finds in the cache.
    seen = {}
    for repo, rev, name in [("timm/vit_token32_test", "main", "config.json"),
                            ("timm/vit_token32_test", "main", "model.safetensors"),
                            ("timm/vit_token32_test", "v0", "pytorch_model.bin"),
                            ("timm/vit_token32_test", "v0", "model.safetensors"),
                            ("google/vit-test", "main", "preprocessor_config.json")]:
        p = huggingface_hub.try_to_load_from_cache(repo, name, cache_dir=a.out, revision=rev)
        seen[f"{repo}@{rev}/{name}"] = os.path.relpath(p, a.out) if isinstance(p, str) else None
    info = huggingface_hub.scan_cache_dir(a.out)
    assert not info.warnings, info.warnings
    expected["huggingface_hub"] = {
        "version": huggingface_hub.__version__,
        "try_to_load_from_cache": seen,
        "scan_cache_dir": sorted(
            [r.repo_id, sorted(sorted(rev.refs) for rev in r.revisions)] for r in info.repos),
    }
    with open(a.expected, "w") as f:
        json.dump(expected, f, indent=1)
    print(f"hf cache: {len(info.repos)} repos in {a.out}")


if __name__ == "__main__":
    main()
