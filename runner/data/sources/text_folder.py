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
from runner.data.sources.class_folders import class_folder_files


def load(spec, path, options, seed) -> Source:
    files, labels, class_names = class_folder_files(spec, path, options, (".txt",), "text files")
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
