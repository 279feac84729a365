"""Sources: where a split's elements come from (tfds, IDX, CSV, NPZ, NPY, TFRecord, synthetic).

Every file is opened and checked here, while the spec is being built, so that a missing or
corrupt file is reported at its spec key before any training starts.
"""

from __future__ import annotations

import glob
import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from runner.errors import first_line


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


def load_source(spec, path: tuple, config: dict, seed: int | None = None) -> Source:
    """The Source declared at `path` (e.g. `("data", "train", "source")`).

    Raises:
        SpecError: a missing or corrupt file, or data that does not match the declaration.
    """
    ((kind, options),) = config.items()
    loaders = {"tfds": _tfds, "idx": _idx, "csv": _csv, "npz": _npz, "npy": _npy,
               "tfrecord": _tfrecord, "synthetic": _synthetic}
    if kind not in loaders:
        raise spec.error(path, f"unknown source '{kind}' (known: {', '.join(loaders)})")
    return loaders[kind](spec, path + (kind,), options or {}, seed)


def synthetic_truth(source_config: dict, x: np.ndarray) -> np.ndarray | None:
    """The noise-free y of a synthetic source at `x` (None when the source is not synthetic).

    Args:
        source_config: the `synthetic:` mapping, or a whole `source:` mapping.
        x: the inputs, any shape.
    """
    if "synthetic" in source_config:
        source_config = source_config["synthetic"]
    if not isinstance(source_config, dict) or "y" not in source_config:
        return None
    ((kind, options),) = source_config["y"].items()
    x = np.asarray(x, dtype=np.float64)
    if kind == "linear":
        y = options["w"] * x + options["b"]
    else:
        y = np.polynomial.polynomial.polyval(x, options["coefficients"])
    return y.astype(np.float32)


# ---------------------------------------------------------------------------- arrays


def _array_source(features, labels, files, num_classes=None) -> Source:
    """A Source over in-memory arrays; slices of it share the arrays' metadata."""
    if num_classes is None:
        num_classes = _num_classes(labels)

    def make():
        return tf.data.Dataset.from_tensor_slices(features if labels is None else (features, labels))

    def select(start, stop):
        return _array_source(features[start:stop], None if labels is None else labels[start:stop],
                             files, num_classes)

    return Source(make, len(features), select, num_classes, None, list(files))


def _num_classes(labels) -> int | None:
    """max label + 1 for integer class labels (one per element), else None."""
    if labels is None or labels.ndim != 1 or len(labels) == 0 or labels.dtype.kind not in "iu":
        return None
    return int(labels.max()) + 1


def _check_lengths(spec, label_path, features, labels, what="feature rows"):
    if labels is not None and len(labels) != len(features):
        raise spec.error(label_path, f"{len(labels)} labels for {len(features)} {what}")


def _file(spec, path: tuple, value: str) -> Path:
    """The existing file a spec key names, or a located 'file not found'."""
    file = spec.resolve_path(value)
    if not file.is_file():
        raise spec.error(path, f"file not found: {file}")
    return file


def _read_bytes(spec, path: tuple, file: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by its magic bytes, not its name)."""
    raw = file.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise spec.error(path, f"corrupt gzip file: {file} ({e})") from e
    return raw


# ---------------------------------------------------------------------------- idx

# The IDX format's type codes (third byte of the magic number); data is big-endian.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx(spec, path, options, seed) -> Source:
    files = [_file(spec, path + ("images",), options["images"])]
    images = _read_idx(spec, path + ("images",), files[0])
    labels = None
    if options.get("labels"):
        files.append(_file(spec, path + ("labels",), options["labels"]))
        labels = _read_idx(spec, path + ("labels",), files[1])
        _check_lengths(spec, path + ("labels",), images, labels, "images")
    return _array_source(images, labels, files)


def _read_idx(spec, path: tuple, file: Path) -> np.ndarray:
    raw = _read_bytes(spec, path, file)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        magic = raw[:4].hex() or "empty"
        raise spec.error(path, f"not an IDX file (magic number {magic}): {file}")
    rank, start = raw[3], 4 + 4 * raw[3]
    if len(raw) < start:
        raise spec.error(path, f"corrupt IDX file: header cut short: {file}")
    dims = struct.unpack(f">{rank}I", raw[4:start])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - start != expected:
        raise spec.error(
            path, f"corrupt IDX file: shape {list(dims)} needs {expected} bytes of data, "
                  f"found {len(raw) - start}: {file}")
    return np.frombuffer(raw, dtype, offset=start).reshape(dims).astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------------------- csv


def _csv(spec, path, options, seed) -> Source:
    file = _file(spec, path + ("path",), options["path"])
    text = _read_bytes(spec, path + ("path",), file).decode("utf-8", errors="replace")
    delimiter = options.get("delimiter", ",")
    lines = text.splitlines()
    names = None
    if options.get("header", False):
        if not lines:
            raise spec.error(path + ("path",), f"empty CSV file: {file}")
        names = [n.strip().strip('"') for n in lines[0].split(delimiter)]
        lines = lines[1:]
    try:
        table = np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise spec.error(path + ("path",), f"cannot read CSV {file}: {e}") from e
    columns = table.shape[1] if table.size else len(names or [])
    label_column = _label_column(spec, path, options.get("label", -1), names, columns)
    labels = None
    if label_column is not None:
        labels = table[:, label_column]
        labels = labels.astype(np.int64) if np.all(labels == np.round(labels)) else labels.astype(np.float32)
        table = np.delete(table, label_column, axis=1)
    features = _reshape_rows(spec, path + ("shape",), table, options.get("shape"))
    features = _convert(spec, path + ("dtype",), features, options.get("dtype", "float32"), file)
    return _array_source(features, labels, [file])


def _label_column(spec, path, label, names, columns) -> int | None:
    if label is None:
        return None
    if isinstance(label, str):
        if names is None:
            raise spec.error(path + ("label",), f"label '{label}' names a column, but the CSV has no header "
                                                "(set header: true, or give the column index)")
        if label not in names:
            raise spec.error(path + ("label",), f"no column '{label}' in the header (columns: {', '.join(names)})")
        return names.index(label)
    if not -columns <= label < columns:
        raise spec.error(path + ("label",), f"label column {label} is out of range: the CSV has {columns} columns")
    return label % columns


def _reshape_rows(spec, path, table, shape):
    if shape is None:
        return table
    target = [-1 if s is None else s for s in shape]
    try:
        return table.reshape([len(table)] + target)
    except ValueError as e:
        raise spec.error(path, f"cannot reshape {table.shape[1]} feature columns into {list(shape)}") from e


def _convert(spec, path, values, dtype_name, file):
    dtype = _numpy_dtype(spec, path, dtype_name)
    converted = values.astype(dtype)
    if dtype.kind in "iub" and not np.array_equal(converted, values):
        raise spec.error(path, f"the values in {file} do not fit dtype {dtype_name}")
    return converted


def _numpy_dtype(spec, path, name) -> np.dtype:
    try:
        dtype = tf.as_dtype(name)
    except TypeError as e:
        raise spec.error(path, f"unknown dtype '{name}'", at_value=True) from e
    if dtype == tf.string:
        raise spec.error(path, "numeric data cannot have dtype string", at_value=True)
    return np.dtype(dtype.as_numpy_dtype)


# ---------------------------------------------------------------------------- npz / npy


def _npz(spec, path, options, seed) -> Source:
    file = _file(spec, path + ("path",), options["path"])
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = list(archive.keys())
            features = _archive_array(spec, path + ("features",), archive, options["features"], keys, file)
            labels = None
            if options.get("label"):
                labels = _archive_array(spec, path + ("label",), archive, options["label"], keys, file)
    except (OSError, ValueError, zlib.error, EOFError) as e:
        raise spec.error(path + ("path",), f"cannot read NPZ archive {file}: {e}") from e
    _check_lengths(spec, path + ("label",), features, labels)
    return _array_source(features, labels, [file])


def _archive_array(spec, path, archive, key, keys, file):
    if key not in keys:
        raise spec.error(path, f"no array '{key}' in {file} (arrays: {', '.join(keys)})", at_value=True)
    return archive[key]


def _npy(spec, path, options, seed) -> Source:
    files = [_file(spec, path + ("features",), options["features"])]
    features = _load_npy(spec, path + ("features",), files[0])
    labels = None
    if options.get("label"):
        files.append(_file(spec, path + ("label",), options["label"]))
        labels = _load_npy(spec, path + ("label",), files[1])
        _check_lengths(spec, path + ("label",), features, labels)
    return _array_source(features, labels, files)


def _load_npy(spec, path, file):
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise spec.error(path, f"cannot read NPY file {file}: {e}") from e
    if array.ndim == 0:
        raise spec.error(path, f"{file} holds a single value, not one row per element")
    return array


# ---------------------------------------------------------------------------- synthetic


def _synthetic(spec, path, options, seed) -> Source:
    seed = options.get("seed", seed if seed is not None else 0)
    rng = np.random.default_rng(seed)
    ((kind, draw),) = options["x"].items()
    if kind == "linspace":
        x = np.linspace(draw["start"], draw["stop"], draw["num"])
    elif kind == "uniform":
        x = rng.uniform(draw["low"], draw["high"], draw["num"])
    else:
        x = rng.normal(draw.get("mean", 0.0), draw.get("stddev", 1.0), draw["num"])
    y = synthetic_truth(options, x).astype(np.float64)
    stddev = (options.get("noise") or {}).get("stddev", 0.0)
    if stddev:
        y = y + rng.normal(0.0, stddev, len(x))
    return _array_source(x.astype(np.float32)[:, None], y.astype(np.float32)[:, None], [])


# ---------------------------------------------------------------------------- tfrecord


def _tfrecord(spec, path, options, seed) -> Source:
    files = _tfrecord_files(spec, path + ("files",), options["files"])
    compression = options.get("compression") or ""
    description, casts = {}, {}
    for name, declared in options["features"].items():
        dtype = tf.as_dtype(declared["dtype"])
        # tf.train.Example stores only float32, int64 and bytes; other dtypes are cast after parsing
        stored = tf.string if dtype == tf.string else tf.float32 if dtype.is_floating else tf.int64
        shape = declared.get("shape") or []
        if any(s is None or s < 0 for s in shape):
            raise spec.error(path + ("features", name, "shape"), "a TFRecord feature needs a fixed shape "
                                                                 f"(no null or -1), got {shape}", at_value=True)
        description[name] = tf.io.FixedLenFeature(shape, stored)
        casts[name] = dtype
    label = options.get("label")
    if label is not None and label not in description:
        raise spec.error(path + ("label",), f"'{label}' is not one of the declared features "
                                            f"({', '.join(description)})", at_value=True)

    def parse(record):
        example = tf.io.parse_single_example(record, description)
        example = {k: tf.cast(v, casts[k]) for k, v in example.items()}
        target = example.pop(label) if label is not None else None
        features = next(iter(example.values())) if len(example) == 1 else example
        return features if target is None else (features, target)

    def make():
        return tf.data.TFRecordDataset([str(f) for f in files], compression_type=compression).map(
            parse, num_parallel_calls=tf.data.AUTOTUNE)

    count, num_classes = _scan_tfrecords(spec, path, files, compression, make, label is not None)
    return dataset_source(make, count, num_classes, None, files)


def _tfrecord_files(spec, path, patterns) -> list[Path]:
    files = []
    for i, pattern in enumerate(patterns):
        resolved = spec.resolve_path(pattern)
        if glob.has_magic(str(resolved)):
            matches = sorted(Path(p) for p in glob.glob(str(resolved)))
            if not matches:
                raise spec.error(path + (i,), f"no file matches: {resolved}", at_value=True)
            files += matches
        elif resolved.is_file():
            files.append(resolved)
        else:
            raise spec.error(path + (i,), f"file not found: {resolved}", at_value=True)
    return files


def _scan_tfrecords(spec, path, files, compression, make, labelled):
    """Read every record once: corrupt files and mismatched features fail here, not mid-fit.

    Returns (number of records, num_classes or None).
    """
    for i, file in enumerate(files):
        try:
            tf.data.TFRecordDataset(str(file), compression_type=compression).reduce(0, lambda n, _: n + 1)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise spec.error(path + ("files",), f"corrupt TFRecord file {file}: {first_line(e)}") from e
    dataset = make()
    try:
        if labelled and dataset.element_spec[1].shape.rank == 0 and dataset.element_spec[1].dtype.is_integer:
            count, top = dataset.reduce((tf.constant(0, tf.int64), tf.constant(-1, tf.int64)),
                                        lambda s, e: (s[0] + 1, tf.maximum(s[1], tf.cast(e[1], tf.int64))))
            count, top = int(count), int(top)
            return count, (top + 1 if top >= 0 else None)
        return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)), None
    except tf.errors.InvalidArgumentError as e:
        raise spec.error(path + ("features",), f"the records do not match the declared features: "
                                               f"{first_line(e)}") from e


def dataset_source(make, count, num_classes, class_names, files) -> Source:
    """A Source over a dataset read in a fixed order: slices are take/skip."""

    def select(start, stop):
        return dataset_source(lambda: make().skip(start).take(stop - start), stop - start,
                               num_classes, class_names, files)

    return Source(make, count, select, num_classes, class_names, list(files))


def _tfds(spec, path, options, seed) -> Source:
    from runner.tfds_source import load_tfds  # imports tensorflow_datasets: only tfds specs pay for it

    return load_tfds(spec, path, options)
