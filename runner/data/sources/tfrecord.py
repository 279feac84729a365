"""The `tfrecord` source: tf.train.Example files or globs with a declared feature description."""

from __future__ import annotations

import glob
import struct
import zlib
from pathlib import Path

import tensorflow as tf

from runner.data.source import Source, dataset_source
from runner.spec.errors import first_line


def load(spec, path, options, seed) -> Source:
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
    for i, name in enumerate(label if isinstance(label, list) else [label] if label is not None else []):
        if name not in description:
            where = path + ("label",) + ((i,) if isinstance(label, list) else ())
            raise spec.error(where, f"'{name}' is not one of the declared features "
                                    f"({', '.join(description)})", at_value=True)

    def parse(record):
        example = tf.io.parse_single_example(record, description)
        example = {k: tf.cast(v, casts[k]) for k, v in example.items()}
        if isinstance(label, list):  # several named labels, for a model with several outputs
            target = {name: example.pop(name) for name in label}
        else:
            target = example.pop(label) if label is not None else None
        features = next(iter(example.values())) if len(example) == 1 else example
        return features if target is None else (features, target)

    def make():
        return tf.data.TFRecordDataset([str(f) for f in files], compression_type=compression).map(
            parse, num_parallel_calls=tf.data.AUTOTUNE)

    count, num_classes = _scan_tfrecords(spec, path, files, compression, make, label is not None)

    def counted():
        # The scan counted the records: tf.data then knows the split's size (no probe for
        # emptiness, `all` sizes exact), and a file that shrinks before training is an error.
        return make().apply(tf.data.experimental.assert_cardinality(count))

    return dataset_source(counted, count, num_classes, None, files)


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
        problem = record_length_problem(file, compression)
        if problem:
            raise spec.error(path + ("files",), f"corrupt TFRecord file {file}: {problem}")
        try:
            tf.data.TFRecordDataset(str(file), compression_type=compression).reduce(0, lambda n, _: n + 1)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise spec.error(path + ("files",), f"corrupt TFRecord file {file}: {first_line(e)}") from e
    dataset = make()
    try:
        if labelled and isinstance(dataset.element_spec[1], tf.TensorSpec) and dataset.element_spec[1].shape.rank == 0 and dataset.element_spec[1].dtype.is_integer:
            count, top = dataset.reduce((tf.constant(0, tf.int64), tf.constant(-1, tf.int64)),
                                        lambda s, e: (s[0] + 1, tf.maximum(s[1], tf.cast(e[1], tf.int64))))
            count, top = int(count), int(top)
            return count, (top + 1 if top >= 0 else None)
        return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1)), None
    except tf.errors.InvalidArgumentError as e:
        raise spec.error(path + ("features",), f"the records do not match the declared features: "
                                               f"{first_line(e)}") from e


_MAX_RECORD = 1 << 31  # a tf.train.Example is a protobuf message: at most 2 GiB
_CHUNK = 1 << 20


def record_length_problem(file, compression: str = "") -> str | None:
    """Why the length fields of a TFRecord file cannot be trusted, or None when they can.

    Each record is `length (8 bytes) | crc (4) | data (length) | crc (4)`; TensorFlow
    allocates `length` bytes before reading them, so a length of 2^40 crashes the process.
    Checked here, reading (and, compressed, inflating) the file in bounded chunks.
    """
    with open(file, "rb") as handle:
        stream = _Stream(handle, compression)
        index = 0
        while True:
            head = stream.read(12)
            if len(head) < 12:
                return None  # the end, or a cut header: TensorFlow says so itself
            (length,) = struct.unpack("<Q", head[:8])
            if length > _MAX_RECORD:
                return f"record {index} claims {length} bytes (more than a record can hold, {_MAX_RECORD})"
            available = stream.skip(length + 4)
            if available < length + 4:
                return f"record {index} claims {length} bytes, but only {max(available - 4, 0)} follow (truncated?)"
            index += 1


class _Stream:
    """A file's bytes, inflated when GZIP or ZLIB, read in bounded chunks."""

    def __init__(self, handle, compression: str):
        self.handle = handle
        kind = (compression or "").upper()
        self.inflater = None if not kind else zlib.decompressobj(16 + zlib.MAX_WBITS if kind == "GZIP" else zlib.MAX_WBITS)
        self.buffer = b""

    def _more(self, wanted: int) -> bytes:
        if self.inflater is None:
            return self.handle.read(wanted)
        while True:
            source = self.inflater.unconsumed_tail or self.handle.read(_CHUNK)
            if not source:
                return b""
            try:
                out = self.inflater.decompress(source, max(wanted, 1))
            except zlib.error:
                return b""  # corrupt compression: TensorFlow's scan says so
            if out or self.inflater.eof:
                return out

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            more = self._more(n - len(self.buffer))
            if not more:
                break
            self.buffer += more
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def skip(self, n: int) -> int:
        """Skip up to n bytes; returns how many there were."""
        if self.inflater is None and not self.buffer:
            here = self.handle.tell()
            end = self.handle.seek(0, 2)
            skipped = min(n, end - here)
            self.handle.seek(here + skipped)
            return skipped
        skipped = 0
        while skipped < n:
            piece = self.read(min(_CHUNK, n - skipped))
            if not piece:
                break
            skipped += len(piece)
        return skipped
