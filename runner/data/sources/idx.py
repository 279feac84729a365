"""The `idx` source: MNIST-family IDX files, gzip or raw."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from runner.data.source import Source, array_source, check_lengths, existing_file, read_bytes


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
    raw = read_bytes(spec, path, file)
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
