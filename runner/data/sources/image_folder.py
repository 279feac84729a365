"""The `image_folder` source: one sub-folder per class, as keras.utils.image_dataset_from_directory.

Class names are the sub-folders' names in alphabetical order (label i is the i-th), images
are found by extension, decoded with tf.io.decode_image and, with `image_size`, resized.
Without it each image keeps its size: images of one size get that static shape, images of
several sizes are refused unless a map op resizes them before they are batched.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import tensorflow as tf

from runner.data.source import Source
from runner.data.sources.class_folders import class_folder_files

_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load(spec, path, options, seed) -> Source:
    files, labels, class_names = _image_files(spec, path, options)
    for file in files:  # before TensorFlow decodes (and allocates) them, mid-run
        problem = image_problem(file)
        if problem:
            raise spec.error(path + ("directory",), f"{file}: {problem}")
    channels = {"grayscale": 1, "rgb": 3, "rgba": 4}[options.get("color_mode", "rgb")]
    size = options.get("image_size")
    shape = None
    if size is None:  # each image's own size: one size batches (and has a static shape), several do not
        sizes = sorted({image_size(f) for f in files})
        if len(sizes) == 1:
            shape = sizes[0]
        elif not _resized_before_batch(spec, path):
            shown = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
            directory = spec.resolve_path(options["directory"])
            raise spec.error(path, f"the images under {directory} have {len(sizes)} sizes ({shown}), and a batch "
                                   "holds images of one size: set image_size: [height, width] to resize them all "
                                   "(or resize them with a map op before batch)")
    return _source(np.array([str(f) for f in files]), np.array(labels, np.int64), channels, size,
                   class_names, files, shape)


def located_decode_error(spec, error):
    """A located SpecError naming the image file behind a decoding error TensorFlow raised
    mid-run (its message names no file), or None when no image_folder file is at fault.

    Only on that failure: every image of the spec's image folders is decoded once, in order.
    """
    text = getattr(error, "message", None) or str(error)
    if not re.search(r"Invalid (PNG|JPEG|GIF|BMP) data|Unknown image file format|decode|image", text, re.IGNORECASE):
        return None
    for split, config in spec.sections.data.splits.items():
        options = (config.source or {}).get("image_folder")
        if not isinstance(options, dict):
            continue
        path = ("data", split, "source", "image_folder")
        try:
            files = _image_files(spec, path, options)[0]
        except Exception:  # noqa: BLE001 - the folder changed since it was read: nothing to name
            continue
        for file in files:
            try:
                tf.io.decode_image(tf.io.read_file(str(file)), expand_animations=False)
            except tf.errors.OpError as e:
                reason = re.sub(r"\{\{[^}]*\}\}\s*", "", e.message or "").split(" [Op:")[0].strip()
                return spec.error(path + ("directory",), f"{file}: cannot be decoded as an image ({reason}); "
                                                         "remove or replace it")
    return None


def _image_files(spec, path, options):
    """The image files of an image folder (sorted, class by class), their labels and the class names."""
    return class_folder_files(spec, path, options, _EXTENSIONS, "images")


MAX_PIXELS = 1 << 28  # 16384 x 16384: more is a decompression bomb, not a training image


def image_problem(file) -> str | None:
    """Why `file` is not an image TensorFlow can decode within bounds, from its first bytes;
    None when its format is known and its declared size is sane (the pixels are not read)."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError as e:
        return f"cannot read it: {e.strerror or type(e).__name__}"
    size = _declared_size(head)
    if size is None:
        return "not a PNG, JPEG, GIF or BMP image (by its first bytes)"
    width, height = size
    if width * height > MAX_PIXELS:
        return f"declares {width} x {height} pixels, more than {MAX_PIXELS} (a decompression bomb?)"
    return None


def _declared_size(head: bytes):
    """(width, height) from an image header; (0, 0) when the format is known but the size is not
    in these bytes; None when it is not an image format TensorFlow decodes."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return struct.unpack(">II", head[16:24]) if len(head) >= 24 else (0, 0)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return struct.unpack("<HH", head[6:10]) if len(head) >= 10 else (0, 0)
    if head.startswith(b"BM"):
        if len(head) < 26:
            return (0, 0)
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes):
    position = 2
    while position + 9 <= len(head) and head[position] == 0xFF:
        marker = head[position + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height, width = struct.unpack(">HH", head[position + 5:position + 9])
            return width, height
        position += 2 + struct.unpack(">H", head[position + 2:position + 4])[0]
    return (0, 0)


def image_size(file) -> tuple:
    """(height, width) of an image file from its header (decoded when the header does not say)."""
    with open(file, "rb") as handle:
        size = _declared_size(handle.read(1 << 16))
    if size and all(size):
        return size[1], size[0]
    return tuple(int(d) for d in tf.io.decode_image(tf.io.read_file(str(file)), expand_animations=False).shape[:2])


def _resized_before_batch(spec, path) -> bool:
    """Whether the split's stages resize (or crop) the images to one size before any batch."""
    stages = spec.sections.data.split(path[1]).stages  # a fraction's source is train's
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
