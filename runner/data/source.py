"""What every source yields: a `Source` (a dataset factory, its size and metadata) and the
file helpers all file sources share (located "file not found", gzip by magic bytes)."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf


@dataclass
class Source:
    """A split's elements before its stages.

    `make` builds the tf.data.Dataset of `(features, label)` (or features only);
    `select(start, stop)` is the Source of elements [start, stop), used to carve a
    validation fraction off the end of train; `subset(indices)` (when the source can)
    the Source of the elements at those indices, for a shuffled or stratified split.
    `labels` holds the labels when they are in memory (to stratify and count classes);
    `table` the raw columns of a tabular CSV, encoded after the split (`runner.data.table`).
    `tensors()`, when the elements are in memory, gives them as the tensors `make` slices
    (made once: every dataset of the source shares them rather than copying the arrays).
    """

    make: Callable[[], tf.data.Dataset]
    count: int
    select: Callable[[int, int], "Source"]
    num_classes: int | None = None
    class_names: list | None = None
    files: list = field(default_factory=list)
    subset: Callable | None = None
    labels: object = None
    table: object = None
    tensors: Callable | None = None


def array_source(features, labels, files, num_classes=None) -> Source:
    """A Source over in-memory arrays; slices of it share the arrays' metadata."""
    if num_classes is None:
        num_classes = _num_classes(labels)

    arrays = features if labels is None else (features, labels)
    made = []

    def tensors():
        if not made:  # on first use: a source that is only split or counted never copies its arrays
            made.append(tf.nest.map_structure(tf.convert_to_tensor, arrays))
        return made[0]

    def make():
        return tf.data.Dataset.from_tensor_slices(tensors())

    def select(start, stop):
        return subset(np.arange(start, stop))

    def subset(indices):
        return array_source(_take_rows(features, indices), _take_rows(labels, indices), files, num_classes)

    return Source(make, _length(features), select, num_classes, None, list(files), subset=subset,
                  labels=labels if isinstance(labels, np.ndarray) else None, tensors=tensors)


def _take_rows(arrays, indices):
    """Rows of an array, or of every array in a dict (several named features or labels)."""
    if arrays is None:
        return None
    if isinstance(arrays, dict):
        return {k: v[indices] for k, v in arrays.items()}
    return arrays[indices]


def _length(arrays) -> int:
    return len(next(iter(arrays.values()))) if isinstance(arrays, dict) else len(arrays)


def _num_classes(labels) -> int | None:
    """max label + 1 for integer class labels (one per element), else None."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or len(labels) == 0 or labels.dtype.kind not in "iu":
        return None
    return int(labels.max()) + 1


def dataset_source(make, count, num_classes, class_names, files) -> Source:
    """A Source over a dataset read in a fixed order: slices are take/skip, subsets a filter."""

    def select(start, stop):
        return dataset_source(lambda: make().skip(start).take(stop - start), stop - start,
                               num_classes, class_names, files)

    def subset(indices):
        return dataset_source(lambda: keep_indices(make(), indices), len(indices), num_classes, class_names, files)

    return Source(make, count, select, num_classes, class_names, list(files), subset=subset)


def keep_indices(dataset: tf.data.Dataset, indices) -> tf.data.Dataset:
    """The elements at `indices` of a dataset read in a fixed order (in that order of reading)."""
    keep = np.zeros(int(max(indices)) + 1 if len(indices) else 0, dtype=bool)
    keep[np.asarray(indices, dtype=np.int64)] = True
    mask = tf.constant(keep)
    size = tf.constant(len(keep), tf.int64)
    kept = dataset.enumerate().filter(
        lambda i, element: tf.logical_and(i < size, tf.gather(mask, tf.minimum(i, size - 1))))
    return kept.map(lambda i, element: element).apply(tf.data.experimental.assert_cardinality(len(indices)))


def check_lengths(spec, label_path, features, labels, what="feature rows"):
    if labels is not None and len(labels) != len(features):
        raise spec.error(label_path, f"{len(labels)} labels for {len(features)} {what}")


def existing_file(spec, path: tuple, value: str) -> Path:
    """The existing file a spec key names, or a located 'file not found'."""
    file = spec.resolve_path(value)
    if file.is_file():
        return file
    if file.is_dir():
        raise spec.error(path, f"a folder, not a file: {file}")
    if file.exists():  # a device, a pipe, a socket: never read as data
        raise spec.error(path, f"not a regular file: {file}")
    raise spec.error(path, f"file not found: {file}")


def memory_bound() -> int:
    """The most bytes one array read from a file may take: half the machine's memory.

    Sizes read from a file (an IDX or NPY header, a gzip stream, a TFRecord length) are
    checked against it before anything is allocated.
    """
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def read_bytes(spec, path: tuple, file: Path, limit: int | None = None) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its magic bytes, not its name).

    At most `limit` bytes (default `memory_bound()`) are decompressed: a gzip bomb is
    refused, located, before it fills the memory.
    """
    limit = memory_bound() if limit is None else limit
    size = file.stat().st_size
    if size > max(limit, memory_bound()):
        raise spec.error(path, f"{file} holds {size} bytes, more than half this machine's memory")
    raw = file.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gunzip(raw, limit)
    except (OSError, EOFError, zlib.error) as e:
        raise spec.error(path, f"corrupt gzip file: {file} ({e})") from e
    except OverflowError:
        raise spec.error(path, f"{file} decompresses to more than {limit} bytes (a gzip bomb, or more "
                               "data than it declares)") from None


def gunzip(raw: bytes, limit: int) -> bytes:
    """gzip.decompress(raw) (every member), stopping with OverflowError past `limit` bytes."""
    out, rest = [], raw
    total = 0
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = inflater.decompress(rest, limit + 1 - total)
        total += len(chunk)
        out.append(chunk)
        if total > limit:
            raise OverflowError(limit)
        if not inflater.eof:
            if inflater.unconsumed_tail:
                raise OverflowError(limit)
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        rest = inflater.unused_data.lstrip(b"\0")  # members follow each other; padding is allowed
    return b"".join(out)
