"""What every source yields: a `Source` (a dataset factory, its size and metadata) and the
file helpers all file sources share (located "file not found", gzip by magic bytes)."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import tensorflow as tf


@dataclass
class Source:
    """A split's elements before its stages.

    `make` builds the tf.data.Dataset of `(features, label)` (or features only);
    `select(start, stop)` is the Source of elements [start, stop), used to carve a
    validation fraction off the end of train.
    """

    make: Callable[[], tf.data.Dataset]
    count: int
    select: Callable[[int, int], "Source"]
    num_classes: int | None = None
    class_names: list | None = None
    files: list = field(default_factory=list)


def array_source(features, labels, files, num_classes=None) -> Source:
    """A Source over in-memory arrays; slices of it share the arrays' metadata."""
    if num_classes is None:
        num_classes = _num_classes(labels)

    def make():
        return tf.data.Dataset.from_tensor_slices(features if labels is None else (features, labels))

    def select(start, stop):
        return array_source(features[start:stop], None if labels is None else labels[start:stop],
                             files, num_classes)

    return Source(make, len(features), select, num_classes, None, list(files))


def _num_classes(labels) -> int | None:
    """max label + 1 for integer class labels (one per element), else None."""
    if labels is None or labels.ndim != 1 or len(labels) == 0 or labels.dtype.kind not in "iu":
        return None
    return int(labels.max()) + 1


def dataset_source(make, count, num_classes, class_names, files) -> Source:
    """A Source over a dataset read in a fixed order: slices are take/skip."""

    def select(start, stop):
        return dataset_source(lambda: make().skip(start).take(stop - start), stop - start,
                               num_classes, class_names, files)

    return Source(make, count, select, num_classes, class_names, list(files))


def check_lengths(spec, label_path, features, labels, what="feature rows"):
    if labels is not None and len(labels) != len(features):
        raise spec.error(label_path, f"{len(labels)} labels for {len(features)} {what}")


def existing_file(spec, path: tuple, value: str) -> Path:
    """The existing file a spec key names, or a located 'file not found'."""
    file = spec.resolve_path(value)
    if not file.is_file():
        raise spec.error(path, f"file not found: {file}")
    return file


def read_bytes(spec, path: tuple, file: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its magic bytes, not its name)."""
    raw = file.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise spec.error(path, f"corrupt gzip file: {file} ({e})") from e
    return raw
