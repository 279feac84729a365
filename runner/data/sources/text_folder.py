"""The `text_folder` source: one sub-folder of .txt files per class, as
keras.utils.text_dataset_from_directory.

Class names are the sub-folders' names in alphabetical order (label i is the i-th) unless
`class_names` lists them; each file is one element, `(text, label)` with the text a scalar
tf.string (its first `max_length` characters' bytes when given), ready for a
TextVectorization layer.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from runner.data.source import Source


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
        found = sorted(p for p in folder.rglob("*.txt") if p.is_file())
        files += found
        labels += [label] * len(found)
    if not files:
        raise spec.error(path + ("directory",), f"no text files (.txt) under {directory}")
    return _source(np.array([str(f) for f in files]), np.array(labels, np.int64), options.get("max_length"),
                   class_names, files)


def _source(paths, labels, max_length, class_names, files) -> Source:
    def read(file, label):
        text = tf.io.read_file(file)
        if max_length is not None:
            text = tf.strings.substr(text, 0, max_length)  # as text_dataset_from_directory: bytes
        return text, label

    def make():
        return tf.data.Dataset.from_tensor_slices((paths, labels)).map(read, num_parallel_calls=tf.data.AUTOTUNE)

    def subset(indices):
        return _source(paths[indices], labels[indices], max_length, class_names, files)

    def select(start, stop):
        return subset(np.arange(start, stop))

    return Source(make, len(paths), select, len(class_names), list(class_names), list(files),
                  subset=subset, labels=labels)
