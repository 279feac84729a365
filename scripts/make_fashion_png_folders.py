"""Write Fashion-MNIST as PNG files in one sub-folder per class, train and test folders.

    apt-get install dataset-fashion-mnist   # the IDX files, /usr/share/datasets/fashion-mnist
    python scripts/make_fashion_png_folders.py ~/data/fashion-png [--train 6000] [--test 1000]

Writes OUT/train/<class>/<i>.png for the first `--train` images of the training IDX file and
OUT/test/<class>/<i>.png for the first `--test` of the test file: 28x28 grayscale PNGs, the
layout `keras.utils.image_dataset_from_directory` and pipe's `image_folder` source read.
Class folders are numbered (`0-t-shirt`, `1-trouser`, ...) so that their alphabetical order
is the label order. The files are written by this script's own PNG encoder (zlib at a fixed
level, no timestamps): the same bytes on every machine and every run.
"""

from __future__ import annotations

import argparse
import gzip
import struct
import zlib
from pathlib import Path

FASHION = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> tuple[list[int], bytes]:
    """(shape, the unsigned bytes) of a gzipped IDX file."""
    raw = gzip.decompress(path.read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return shape, raw[4 + 4 * dims:]


def png(pixels: bytes, height: int, width: int) -> bytes:
    """A grayscale 8-bit PNG of `pixels` (row by row)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + pixels[r * width:(r + 1) * width] for r in range(height))  # filter: none
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8 bits, grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def class_folder(label: int) -> str:
    return f"{label}-{CLASSES[label]}"


def write_split(out: Path, split: str, count: int, source: Path = FASHION) -> list[int]:
    """Write the first `count` images of `split` under out/split; the images per class."""
    (shape, images), (_, labels) = (read_idx(source / name) for name in FILES[split])
    _, height, width = shape
    size = height * width
    per_class = [0] * len(CLASSES)
    for label in range(len(CLASSES)):
        (out / split / class_folder(label)).mkdir(parents=True, exist_ok=True)
    for i in range(min(count, len(labels))):
        label = labels[i]
        (out / split / class_folder(label) / f"{i:05d}.png").write_bytes(
            png(images[i * size:(i + 1) * size], height, width))
        per_class[label] += 1
    return per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=1000)
    args = parser.parse_args()
    for split, count in (("train", args.train), ("test", args.test)):
        per_class = write_split(args.out, split, count)
        print(f"{args.out / split}: {sum(per_class)} images, {', '.join(map(str, per_class))} per class")


if __name__ == "__main__":
    main()
