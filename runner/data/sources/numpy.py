"""The `npz` and `npy` sources: NumPy arrays by key in an archive, or one file each."""

from __future__ import annotations

import zipfile
import zlib

import numpy as np

from runner.data.source import Source, array_source, check_lengths, existing_file


def load_npz(spec, path, options, seed) -> Source:
    file = existing_file(spec, path + ("path",), options["path"])
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
    return archive[key]


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
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise spec.error(path, f"cannot read NPY file {file}: {e}") from e
    if array.ndim == 0:
        raise spec.error(path, f"{file} holds a single value, not one row per element")
    return array
