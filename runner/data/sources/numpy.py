"""The `npz` and `npy` sources: NumPy arrays by key in an archive, or one file each."""

from __future__ import annotations

import math
import zipfile
import zlib

import numpy as np

from runner.data.source import Source, array_source, check_lengths, existing_file, memory_bound


def load_npz(spec, path, options, seed) -> Source:
    file = existing_file(spec, path + ("path",), options["path"])
    problem = _npz_problem(file)
    if problem:
        raise spec.error(path + ("path",), f"cannot read NPZ archive {file}: {problem}")
    try:
        with np.load(file, allow_pickle=False) as archive:
            keys = list(archive.keys())
            features = _archive_arrays(spec, path + ("features",), archive, options["features"], keys, file)
            labels = None
            if options.get("label"):
                labels = _archive_arrays(spec, path + ("label",), archive, options["label"], keys, file)
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as e:
        reason = "not a complete zip archive (truncated?)" if isinstance(e, zipfile.BadZipFile) else e
        raise spec.error(path + ("path",), f"cannot read NPZ archive {file}: {reason}") from e
    if not isinstance(features, dict) and not isinstance(labels, dict):
        check_lengths(spec, path + ("label",), features, labels)
    rows = {len(a) for part in (features, labels) if part is not None
            for a in (part.values() if isinstance(part, dict) else [part])}
    if len(rows) > 1:
        raise spec.error(path, f"the arrays of {file} have different numbers of rows: {sorted(rows)}")
    return array_source(features, labels, [file])


def _archive_arrays(spec, path, archive, keys_wanted, keys, file):
    """One array, or a dict of arrays by key for a list of keys (several named features/labels)."""
    if isinstance(keys_wanted, list):
        return {k: _archive_array(spec, path + (i,), archive, k, keys, file) for i, k in enumerate(keys_wanted)}
    return _archive_array(spec, path, archive, keys_wanted, keys, file)


def _archive_array(spec, path, archive, key, keys, file):
    if key not in keys:
        raise spec.error(path, f"no array '{key}' in {file} (arrays: {', '.join(keys)})", at_value=True)
    return _finite(spec, path, archive[key], f"array '{key}' of {file}")


def _finite(spec, path, array, name: str):
    """`array`, unless it holds NaN or infinities: a step on one makes weights NaN, which a
    ReLU after them can hide from the loss (it reads NaN as 0) while the units stay dead."""
    if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        what = "NaN" if np.isnan(array).any() else "infinite values"
        raise spec.error(path, f"{name} holds {what} (the first in row {row}): fill or drop those rows first",
                         at_value=True)
    return array


def load_npy(spec, path, options, seed) -> Source:
    files = [existing_file(spec, path + ("features",), options["features"])]
    features = _load_npy(spec, path + ("features",), files[0])
    labels = None
    if options.get("label"):
        files.append(existing_file(spec, path + ("label",), options["label"]))
        labels = _load_npy(spec, path + ("label",), files[1])
        check_lengths(spec, path + ("label",), features, labels)
    return array_source(features, labels, files)


def _load_npy(spec, path, file):
    with open(file, "rb") as handle:
        problem = npy_size_problem(handle, file.stat().st_size)
    if problem:
        raise spec.error(path, f"cannot read NPY file {file}: {problem}")
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise spec.error(path, f"cannot read NPY file {file}: {e}") from e
    if array.ndim == 0:
        raise spec.error(path, f"{file} holds a single value, not one row per element")
    return _finite(spec, path, array, str(file))


def npy_size_problem(handle, available: int) -> str | None:
    """Why the NPY array at `handle` cannot be read within `available` bytes and the memory,
    or None. NumPy allocates the whole shape its header claims before reading the data:
    a header claiming 2^40 rows would exhaust the memory (or crash) first."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return None  # NumPy's own reader says what it does not support
    except (ValueError, OSError, EOFError, SyntaxError):
        return None  # not an NPY file: NumPy's own message names the reason
    needed = math.prod(shape) * dtype.itemsize  # Python ints: no 64-bit wrap
    if needed > memory_bound():
        return f"its header claims shape {list(shape)} ({needed} bytes), more than half this machine's memory"
    if not dtype.hasobject and needed > available - handle.tell():
        return (f"its header claims shape {list(shape)} ({needed} bytes), but only "
                f"{max(available - handle.tell(), 0)} bytes of data follow (truncated or forged)")
    if not dtype.hasobject and needed < available - handle.tell():  # as IDX: the data is exactly its shape
        return (f"its header claims shape {list(shape)} ({needed} bytes), but {available - handle.tell()} "
                "bytes of data follow (bytes appended, or a forged header)")
    return None


def _npz_problem(file) -> str | None:
    """The first NPY member of an NPZ archive whose header claims more than it holds."""
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    problem = npy_size_problem(member, info.file_size)
                if problem:
                    return f"{info.filename[:-4]!r}: {problem}"
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile, NotImplementedError):
        return None  # np.load says what is wrong with the archive
    return None
