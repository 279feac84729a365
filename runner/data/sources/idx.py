"""The `idx` source: MNIST-family IDX files, gzip or raw."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from runner.data.source import Source, array_source, check_lengths, existing_file, memory_bound, read_bytes
from runner.spec.errors import SpecError


# The IDX format's type codes (third byte of the magic number); data is big-endian.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load(spec, path, options, seed) -> Source:
    files = [existing_file(spec, path + ("images",), options["images"])]
    images = _read_idx(spec, path + ("images",), files[0])
    labels = None
    if options.get("labels"):
        files.append(existing_file(spec, path + ("labels",), options["labels"]))
        labels = _read_idx(spec, path + ("labels",), files[1])
        check_lengths(spec, path + ("labels",), images, labels, "images")
    return array_source(images, labels, files)


def _read_idx(spec, path: tuple, file: Path) -> np.ndarray:
    header = _header(spec, path, file)
    if len(header) < 4 or header[0] != 0 or header[1] != 0 or header[2] not in _IDX_TYPES:
        magic = header[:4].hex() or "empty"
        raise spec.error(path, f"not an IDX file (magic number {magic}): {file}")
    rank, start = header[3], 4 + 4 * header[3]
    if len(header) < start:
        raise spec.error(path, f"corrupt IDX file: header cut short: {file}")
    dims = struct.unpack(f">{rank}I", header[4:start])
    dtype = np.dtype(_IDX_TYPES[header[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no 64-bit wrap to "needs 0 bytes"
    if expected > memory_bound():
        raise spec.error(path, f"corrupt IDX file: shape {list(dims)} needs {expected} bytes of data, more "
                               f"than half this machine's memory: {file}")
    try:
        raw = read_bytes(spec, path, file, limit=start + expected)
    except SpecError as e:
        if "decompresses to more than" not in e.message:
            raise
        raise spec.error(path, f"corrupt IDX file: shape {list(dims)} needs {expected} bytes of data, "
                               f"found more: {file}") from None
    if len(raw) - start != expected:
        raise spec.error(
            path, f"corrupt IDX file: shape {list(dims)} needs {expected} bytes of data, "
                  f"found {len(raw) - start}: {file}")
    return np.frombuffer(raw, dtype, offset=start).reshape(dims).astype(dtype.newbyteorder("="))


_HEADER_BYTES = 4 + 4 * 255  # magic number and up to 255 dimensions


def _header(spec, path: tuple, file: Path) -> bytes:
    """The first bytes of the file, gunzipped if it is gzip (never the whole stream)."""
    with open(file, "rb") as handle:
        head = handle.read(1 << 16)
    if head[:2] != b"\x1f\x8b":
        return head[:_HEADER_BYTES]
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _HEADER_BYTES)
    except zlib.error as e:
        raise spec.error(path, f"corrupt gzip file: {file} ({e})") from e
