"""The `webdataset` package's own writer and reader, for vit-train's shard tests
(crates/vit-train/tests/shards.rs).

`write --from DIR --out DIR`: shards of an image folder (CLASS/IMAGE) written by
`webdataset.ShardWriter` (maxcount 6 per shard: several shards), the way its users write
ImageNet: `__key__` = CLASS_STEM, the image under its extension, `cls` the class index;
classes.txt beside them. Prints the samples written as JSON: [[key, cls, sha256 of image], ...].

`read PATTERN`: the samples of shards as `webdataset.WebDataset` reads them (no shard shuffle,
no decoding), as the same JSON.
"""
import argparse
import hashlib
import json
import os

import webdataset as wds

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def write(src, out):
    os.makedirs(out, exist_ok=True)
    classes = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.write("".join(c + "\n" for c in classes))
    written = []
    with wds.ShardWriter(os.path.join(out, "wds-%06d.tar"), maxcount=6, verbose=0) as sink:
        for label, c in enumerate(classes):
            for name in sorted(os.listdir(os.path.join(src, c))):
                stem, ext = os.path.splitext(name)
                ext = ext[1:].lower()
                if ext not in IMAGE_EXTS:
                    continue
                data = open(os.path.join(src, c, name), "rb").read()
                key = f"{c}_{stem}"
                sink.write({"__key__": key, ext: data, "cls": str(label)})
                written.append([key, label, hashlib.sha256(data).hexdigest()])
    print(json.dumps(written))


def read(pattern):
    out = []
    for s in wds.WebDataset(pattern, shardshuffle=False, empty_check=False):
        ext = next(e for e in s if e.lower() in IMAGE_EXTS)
        out.append([s["__key__"], int(s["cls"]), hashlib.sha256(s[ext]).hexdigest()])
    print(json.dumps(out))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--from", dest="src", required=True)
    w.add_argument("--out", required=True)
    r = sub.add_parser("read")
    r.add_argument("pattern")
    a = ap.parse_args()
    write(a.src, a.out) if a.cmd == "write" else read(a.pattern)
