"""The `csv` source: numeric CSV, plain or gzip, with a label column by index or name."""

from __future__ import annotations

import re

import numpy as np
import tensorflow as tf

from runner.data.source import Source, array_source, existing_file, read_bytes


def load(spec, path, options, seed) -> Source:
    file = existing_file(spec, path + ("path",), options["path"])
    text = read_bytes(spec, path + ("path",), file).decode("utf-8", errors="replace")
    delimiter = options.get("delimiter", ",")
    lines = text.splitlines()
    names = None
    if options.get("header", False):
        if not lines:
            raise spec.error(path + ("path",), f"empty CSV file: {file}")
        names = [n.strip().strip('"') for n in lines[0].split(delimiter)]
        lines = lines[1:]
    if not any(line.strip() for line in lines):
        raise spec.error(path + ("path",), f"no data rows in CSV {file}" + (" (only a header)" if names else ""))
    try:
        table = np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise spec.error(path + ("path",), f"cannot read CSV {file}: {_where_unreadable(e, bool(names))}") from e
    columns = table.shape[1] if table.size else len(names or [])
    label_column = _label_column(spec, path, options.get("label", -1), names, columns)
    labels = None
    if label_column is not None:
        labels = table[:, label_column]
        labels = labels.astype(np.int64) if np.all(labels == np.round(labels)) else labels.astype(np.float32)
        table = np.delete(table, label_column, axis=1)
    features = _reshape_rows(spec, path + ("shape",), table, options.get("shape"))
    features = _convert(spec, path + ("dtype",), features, options.get("dtype", "float32"), file)
    return array_source(features, labels, [file])


def _where_unreadable(error: ValueError, header: bool) -> str:
    """Where numpy failed, without quoting the file's text (it may be any file on disk)."""
    found = re.search(r"at row (\d+), column (\d+)", str(error))
    if found:
        row, column = int(found.group(1)) + 1 + header, int(found.group(2))
        return f"line {row}, column {column} is not a number"
    found = re.search(r"the number of columns changed from (\d+) to (\d+) at row (\d+)", str(error))
    if found:
        return (f"line {int(found.group(3)) + header} has {found.group(2)} columns, "
                f"earlier lines {found.group(1)}")
    return "not a numeric CSV table"


def _shown(names) -> str:
    """Header names as a list, unless they do not look like names (the file may be anything)."""
    if all(re.fullmatch(r"[\w .+-]{1,40}", n) for n in names) and len(names) <= 50:
        return ", ".join(names)
    return "the first line does not look like a header of column names"


def _label_column(spec, path, label, names, columns) -> int | None:
    if label is None:
        return None
    if isinstance(label, str):
        if names is None:
            raise spec.error(path + ("label",), f"label '{label}' names a column, but the CSV has no header "
                                                "(set header: true, or give the column index)")
        if label not in names:
            raise spec.error(path + ("label",), f"no column '{label}' in the header (columns: {_shown(names)})")
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
