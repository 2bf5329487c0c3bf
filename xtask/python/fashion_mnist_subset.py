"""Writes the vit-train test fixture: the first 1,000 images of the Fashion-MNIST test set as
IDX files (gzip), split 800 `train` / 200 `t10k`. Standard library only."""
import argparse
import gzip
import os
import struct


def read(path):
    with gzip.open(path, "rb") as f:
        return f.read()


def write(path, data):
    # mtime=0: the same bytes on every run.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True, help="folder with t10k-*-ubyte.gz")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    images = read(os.path.join(args.src, "t10k-images-idx3-ubyte.gz"))
    labels = read(os.path.join(args.src, "t10k-labels-idx1-ubyte.gz"))
    _, n, rows, cols = struct.unpack(">IIII", images[:16])
    px = rows * cols
    for split, lo, hi in [("train", 0, 800), ("t10k", 800, 1000)]:
        k = hi - lo
        write(os.path.join(args.out, f"{split}-images-idx3-ubyte.gz"),
              struct.pack(">IIII", 0x803, k, rows, cols) + images[16 + lo * px:16 + hi * px])
        write(os.path.join(args.out, f"{split}-labels-idx1-ubyte.gz"),
              struct.pack(">II", 0x801, k) + labels[8 + lo:8 + hi])
    print(f"fashion-mnist-1k: 800 train + 200 test images of {rows}x{cols} -> {args.out}")


if __name__ == "__main__":
    main()
