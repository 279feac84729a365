"""The `image_folder` source: one sub-folder per class, as keras.utils.image_dataset_from_directory.

Class names are the sub-folders' names in alphabetical order (label i is the i-th), images
are found by extension, decoded with tf.io.decode_image and, with `image_size`, resized.
"""

from __future__ import annotations

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
    return _source(np.array([str(f) for f in files]), np.array(labels, np.int64), channels, size,
                   class_names, files)


def _source(paths, labels, channels, size, class_names, files) -> Source:
    def read(file, label):
        image = tf.io.decode_image(tf.io.read_file(file), channels=channels, expand_animations=False)
        if size is not None:
            image = tf.image.resize(image, size)  # float32, as image_dataset_from_directory
        else:
            image.set_shape([None, None, channels])
        return image, label

    def make():
        return tf.data.Dataset.from_tensor_slices((paths, labels)).map(read, num_parallel_calls=tf.data.AUTOTUNE)

    def subset(indices):
        return _source(paths[indices], labels[indices], channels, size, class_names, files)

    def select(start, stop):
        return subset(np.arange(start, stop))

    return Source(make, len(paths), select, len(class_names), list(class_names), list(files),
                  subset=subset, labels=labels)
