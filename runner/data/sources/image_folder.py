"""The `image_folder` source: one sub-folder per class, as keras.utils.image_dataset_from_directory.

Class names are the sub-folders' names in alphabetical order (label i is the i-th), images
are found by extension, decoded with tf.io.decode_image and, with `image_size`, resized.
Without it each image keeps its size: images of one size get that static shape, images of
several sizes are refused unless a map op resizes them before they are batched.
"""

from __future__ import annotations

import struct

import numpy as np
import tensorflow as tf

from runner.data.source import Source

_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load(spec, path, options, seed) -> Source:
    directory = spec.resolve_path(options["directory"])
    if not directory.is_dir():
        raise spec.error(path + ("directory",), f"directory not found: {directory}")
    class_names = options.get("class_names") or sorted(p.name for p in directory.iterdir() if p.is_dir())
    if not class_names:
        raise spec.error(path + ("directory",), f"{directory} has no class sub-folders (one folder per class)")
    files, labels = [], []
    for label, name in enumerate(class_names):
        folder = directory / name
        if not folder.is_dir():
            raise spec.error(path + ("class_names",), f"no sub-folder {name!r} in {directory}")
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _EXTENSIONS and p.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        raise spec.error(path + ("directory",), f"no images ({', '.join(_EXTENSIONS)}) under {directory}")
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[options.get("color_mode", "rgb")]
    size = options.get("image_size")
    shape = None
    if size is None:  # each image's own size: one size batches (and has a static shape), several do not
        sizes = sorted({image_size(f) for f in files})
        if len(sizes) == 1:
            shape = sizes[0]
        elif not _resized_before_batch(spec, path):
            shown = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
            raise spec.error(path, f"the images under {directory} have {len(sizes)} sizes ({shown}), and a batch "
                                   "holds images of one size: set image_size: [height, width] to resize them all "
                                   "(or resize them with a map op before batch)")
    return _source(np.array([str(f) for f in files]), np.array(labels, np.int64), channels, size,
                   class_names, files, shape)


def image_size(file) -> tuple:
    """(height, width) of a PNG, GIF, BMP or JPEG file from its header (decoded when unknown)."""
    with open(file, "rb") as f:
        head = f.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">I", head[20:24])[0], struct.unpack(">I", head[16:20])[0]
        if head[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", head[6:10])
            return height, width
        if head[:2] == b"BM":
            width, height = struct.unpack("<ii", head[18:26])
            return abs(height), width
        if head[:2] == b"\xff\xd8":
            found = _jpeg_size(f)
            if found:
                return found
    return tuple(int(d) for d in tf.io.decode_image(tf.io.read_file(str(file)), expand_animations=False).shape[:2])


def _jpeg_size(f):
    """(height, width) from a JPEG's start-of-frame marker, or None."""
    f.seek(2)
    while True:
        marker = f.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return None
        kind, length = marker[1], struct.unpack(">H", marker[2:4])[0]
        if kind in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            frame = f.read(5)
            return struct.unpack(">H", frame[1:3])[0], struct.unpack(">H", frame[3:5])[0]
        f.seek(length - 2, 1)


def _resized_before_batch(spec, path) -> bool:
    """Whether the split's stages resize (or crop) the images to one size before any batch."""
    stages = (spec.doc["data"].get(path[1]) or {}).get("stages") or []  # a fraction's source is train's
    for stage in stages:
        ((name, args),) = stage.items()
        if name == "batch":
            return False
        if name == "map" and any(next(iter(op)) in ("resize", "center_crop") for op in args["ops"]):
            return True
    return True  # never batched


def _source(paths, labels, channels, size, class_names, files, shape=None) -> Source:
    def read(file, label):
        image = tf.io.decode_image(tf.io.read_file(file), channels=channels, expand_animations=False)
        if size is not None:
            image = tf.image.resize(image, size)  # float32, as image_dataset_from_directory
        else:
            image.set_shape([*(shape or (None, None)), channels])
        return image, label

    def make():
        return tf.data.Dataset.from_tensor_slices((paths, labels)).map(read, num_parallel_calls=tf.data.AUTOTUNE)

    def subset(indices):
        return _source(paths[indices], labels[indices], channels, size, class_names, files, shape)

    def select(start, stop):
        return subset(np.arange(start, stop))

    return Source(make, len(paths), select, len(class_names), list(class_names), list(files),
                  subset=subset, labels=labels)
