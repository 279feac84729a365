"""The `csv` source: CSV, plain or gzip, with label columns by index or name.

A numeric CSV is read as one array; a CSV that chooses its `features`, declares
`categorical` columns or a `fill` policy, or holds text or gaps, is read as a table
(`runner.data.table`) and encoded after the split with what train teaches.
"""

from __future__ import annotations

import csv as csv_module
import gzip
import re

import numpy as np
import tensorflow as tf

from runner.data.source import Source, array_source, existing_file, memory_bound, read_bytes
from runner.data.table import Column, Table, table_source

_TABULAR = ("features", "categorical", "fill", "text")
MISSING = ("", "NA", "N/A", "NaN", "nan", "null", "?")
# Parsed, a CSV takes far more memory than its text: every cell becomes a Python string, a
# list slot and a number (about 130 bytes for a cell such as `1,`). The text and its cell
# count are bounded before parsing so that a gzip bomb or a huge file is refused, not swapped.
TEXT_EXPANSION = 16
CELL_BYTES = 128


def text_limit() -> int:
    """The most bytes of CSV text (after gunzip) read: what parsing can hold in the memory."""
    return memory_bound() // TEXT_EXPANSION


def load(spec, path, options, seed) -> Source:
    file = existing_file(spec, path + ("path",), options["path"])
    delimiter = options.get("delimiter", ",")
    _check_header_first(spec, path, options, file)
    text = _bounded_text(spec, path + ("path",), file, delimiter)
    lines = text.splitlines()
    names = None
    if options.get("header", False):
        if not lines:
            raise spec.error(path + ("path",), f"empty CSV file: {file}")
        names = [n.strip().strip('"') for n in lines[0].split(delimiter)]
        lines = lines[1:]
    if not any(line.strip() for line in lines):
        raise spec.error(path + ("path",), f"no data rows in CSV {file}" + (" (only a header)" if names else ""))
    if any(k in options for k in _TABULAR) or isinstance(options.get("label"), list):
        return _load_table(spec, path, options, file, lines, names)
    try:
        table = np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError as e:
        if not lines:
            raise spec.error(path + ("path",), f"cannot read CSV {file}: {e}") from e
        return _load_table(spec, path, options, file, lines, names)  # text or gaps: say which cell
    if not np.isfinite(table).all():  # NaN or inf read as numbers: a missing value or not a number, said by cell
        return _load_table(spec, path, options, file, lines, names)
    columns = table.shape[1] if table.size else len(names or [])
    label_column = _label_column(spec, path, options.get("label", -1), names, columns)
    labels = None
    if label_column is not None:
        cells = [line.split(delimiter)[label_column].strip().strip('"') for line in lines if line.strip()]
        labels = _typed_labels(spec, path, table[:, label_column], cells, options.get("label_dtype"))
        table = np.delete(table, label_column, axis=1)
    features = _reshape_rows(spec, path + ("shape",), table, options.get("shape"))
    features = _convert(spec, path + ("dtype",), features, options.get("dtype", "float32"), file)
    return array_source(features, labels, [file])


def _check_header_first(spec, path, options, file) -> None:
    """A label or feature named but missing from the header is refused before the rest is read."""
    if not options.get("header", False):
        return
    label, declared = options.get("label", -1), options.get("features")
    refs = [(("label",), label)] if isinstance(label, str) else []
    refs += [(("label", i), r) for i, r in enumerate(label)] if isinstance(label, list) else []
    if isinstance(declared, list):
        refs += [(("features", i), r) for i, r in enumerate(declared)]
    elif isinstance(declared, dict):
        refs += [(("features", g, j), r) for g, group in declared.items() if isinstance(group, list)
                 for j, r in enumerate(group)]
    refs = [(where, r) for where, r in refs if isinstance(r, str)]
    if not refs:
        return
    try:
        with open(file, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        with (gzip.open(file, "rb") if gzipped else open(file, "rb")) as handle:
            first = handle.readline(1 << 20)
    except (OSError, EOFError):
        return  # the full read reports it, located
    if not first.strip():
        return
    names = [n.strip().strip('"') for n in first.decode("utf-8", errors="replace").rstrip("\r\n")
             .split(options.get("delimiter", ","))]
    for where, ref in refs:
        if ref not in names:
            if where == ("label",):
                raise spec.error(path + where, f"no column '{ref}' in the header (columns: {_shown(names)})")
            raise spec.error(path + where, f"no column '{ref}' in the header (columns: {', '.join(names)})",
                             at_value=True)


def _bounded_text(spec, path, file, delimiter) -> str:
    """The CSV's text, refused (located) when it, or its number of cells, is more than parsing
    can hold in this machine's memory."""
    limit = text_limit()
    size = file.stat().st_size
    if size > limit:
        raise spec.error(path, f"{file} holds {size} bytes, more CSV text than this machine's memory can parse "
                               f"(at most {limit} bytes)")
    raw = read_bytes(spec, path, file, limit=limit)
    cells = raw.count(delimiter.encode("utf-8", errors="replace") or b",") + raw.count(b"\n") + 1
    if cells * CELL_BYTES > memory_bound():
        raise spec.error(path, f"{file} holds about {cells} cells, more than this machine's memory can parse "
                               f"(at most {memory_bound() // CELL_BYTES})")
    return raw.decode("utf-8", errors="replace")


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


def _load_table(spec, path, options, file, lines, names) -> Source:
    """The CSV as raw columns: numbers (NaN in gaps) or text, checked cell by cell."""
    rows = [r for r in csv_module.reader(lines, delimiter=options.get("delimiter", ","))]
    rows = [r for r in rows if r]  # blank lines
    width = len(names) if names else (len(rows[0]) if rows else 0)
    names = names or [str(i) for i in range(width)]
    first_line = 2 if options.get("header", False) else 1
    for i, row in enumerate(rows):
        if len(row) != width:
            raise spec.error(path + ("path",), f"{file} row {i + 1} (line {i + first_line}) has {len(row)} "
                                               f"columns, the first has {width}")
    label = options.get("label", -1)
    label_refs = [] if label is None else label if isinstance(label, list) else [label]
    label_columns = [_column_index(spec, path + ("label",), ref, names, width, header=bool(options.get("header")))
                     for ref in label_refs]
    feature_columns, groups = _feature_columns(spec, path, options, names, width, label_columns)
    categorical = options.get("categorical") or {}
    if isinstance(categorical, list):
        categorical = {c: "one_hot" for c in categorical}
    text = list(options.get("text") or [])
    for name in text:
        if name in categorical:
            raise spec.error(path + ("text",), f"{name!r} is declared both text and categorical: a text column "
                                               "is kept as strings, a categorical one is encoded")
    fill = options.get("fill")
    missing = set(options.get("missing_values", MISSING))
    cells = [[row[i].strip() for row in rows] for i in range(width)]
    columns, values = [], {}
    for i in feature_columns:
        name = names[i]
        kind = "categorical" if name in categorical else "text" if name in text else "numeric"
        policy = fill.get(name) if isinstance(fill, dict) else fill
        column = Column(name, kind, categorical.get(name, "one_hot"), fill=policy)
        _check_policy(spec, path, column, isinstance(fill, dict))
        values[name] = _column_values(spec, path, file, column, cells[i], missing, first_line)
        column.integer = kind == "categorical" and values[name].dtype.kind == "f"
        columns.append(column)
    for name in categorical:
        if name not in values:
            raise spec.error(path + ("categorical", name), f"{name!r} is not one of the feature columns "
                                                           f"({', '.join(values)})")
    for j, name in enumerate(text):
        if name not in values:
            raise spec.error(path + ("text", j), f"{name!r} is not one of the feature columns "
                                                 f"({', '.join(values)})", at_value=True)
    _check_text_alone(spec, path, columns, groups)
    label_names = [names[i] for i in label_columns]
    labels, text = {}, []
    for name, i in zip(label_names, label_columns):
        labels[name], is_text = _label_values(spec, path, file, name, cells[i], missing, first_line,
                                              options.get("label_dtype"))
        text += [name] if is_text else []
    table = Table(path, columns, groups, values, label_names,
                  None if not label_names else labels if isinstance(label, list) else labels[label_names[0]],
                  text, first_line, np.arange(1, len(rows) + 1))
    return table_source(table, [file])


def _feature_columns(spec, path, options, names, width, label_columns):
    """(indices of the feature columns, {feature name: [column names]} or None)."""
    declared, header = options.get("features"), bool(options.get("header"))
    if isinstance(declared, dict):
        groups = {g: [names[_column_index(spec, path + ("features", g, j), r, names, width, header)]
                      for j, r in enumerate(refs)] for g, refs in declared.items()}
        return list(dict.fromkeys(names.index(n) for refs in groups.values() for n in refs)), groups
    if declared is not None:
        return [_column_index(spec, path + ("features", i), r, names, width, header)
                for i, r in enumerate(declared)], None
    return [i for i in range(width) if i not in label_columns], None


def _check_policy(spec, path, column, per_column) -> None:
    """mean/median need numbers; a constant must fit its column."""
    policy, where = column.fill, path + (("fill", column.name) if per_column else ("fill",))
    if policy in ("mean", "median") and column.kind in ("categorical", "text"):
        raise spec.error(where, f"{policy} cannot fill the {column.kind} column {column.name!r} "
                                "(use most_frequent or a constant)", at_value=True)
    if column.kind == "numeric" and isinstance(policy, str) and policy not in ("mean", "median", "most_frequent"):
        try:
            float(policy)
        except ValueError:
            raise spec.error(where, f"{policy!r} cannot fill the numeric column {column.name!r} "
                                    "(use mean, median, most_frequent or a number)", at_value=True) from None


def _column_index(spec, path, ref, names, width, header) -> int:
    if isinstance(ref, str):
        if not header:
            raise spec.error(path, f"{ref!r} names a column, but the CSV has no header "
                                   "(set header: true, or give the column index)", at_value=True)
        if ref not in names:
            raise spec.error(path, f"no column '{ref}' in the header (columns: {', '.join(names)})", at_value=True)
        return names.index(ref)
    if not -width <= ref < width:
        raise spec.error(path, f"column {ref} is out of range: the CSV has {width} columns", at_value=True)
    return ref % width


def _column_values(spec, path, file, column, cells, missing, first_line):
    """A numeric column as float64 (NaN in gaps), a categorical one as text ("" in gaps)."""
    gaps = [j for j, c in enumerate(cells) if c in missing]
    if gaps and column.fill is None:
        j = gaps[0]
        error = spec.error(path + ("path",), f"missing value in row {j + 1} (line {j + first_line}), column "
                                             f"{column.name!r} of {file} ({len(gaps)} in that column)",
                           f"declare a fill policy, e.g. fill: {{{column.name}: "
                           f"{'mean' if column.kind == 'numeric' else 'most_frequent'}}}")
        # A finished run's spec cannot change: `pipe predict` says this instead of the hint.
        error.file_hint = f"the run declares no fill for column {column.name!r}: fill the gaps in the file"
        raise error
    present = [c for c in cells if c not in missing]
    if column.kind == "text":
        return np.array(["" if c in missing else c for c in cells], dtype=str)
    if column.kind == "categorical":
        if present and all(_is_int(c) for c in present):  # codes such as 1, 2, 3: IntegerLookup
            return np.array([np.nan if c in missing else int(c) for c in cells], dtype=np.float64)
        return np.array(["" if c in missing else c for c in cells], dtype=str)
    out = np.empty(len(cells), dtype=np.float64)
    for j, c in enumerate(cells):
        if c in missing:
            out[j] = np.nan
            continue
        try:
            out[j] = float(c)
        except ValueError:
            error = spec.error(path + ("path",), f"row {j + 1} (line {j + first_line}), column {column.name!r} of "
                                                 f"{file} holds text, not a number",  # the cell itself is not echoed: it may be private
                               f"declare it categorical (categorical: {{{column.name}: one_hot}}), "
                               f"keep it as strings (text: [{column.name}]) or leave it out of features")
            error.file_hint = f"the run reads column {column.name!r} as numbers: fix the row in the file"
            raise error from None
        if not np.isfinite(out[j]):  # inf, or a NaN spelled otherwise than missing_values lists
            error = spec.error(path + ("path",), f"row {j + 1} (line {j + first_line}), column {column.name!r} of "
                                                 f"{file} is not a finite number",
                               "write it as a missing value (missing_values) and declare a fill policy, or fix the row")
            error.file_hint = "fix the row in the file"
            raise error
    return out


def _label_values(spec, path, file, name, cells, missing, first_line, dtype=None):
    """(labels, holds text): integers or floats as numbers; text labels become class indices later."""
    gaps = [j for j, c in enumerate(cells) if c in missing]
    if gaps:
        raise spec.error(path + ("label",), f"missing label in row {gaps[0] + 1} (line {gaps[0] + first_line}), "
                                            f"column {name!r} of {file}")
    try:
        numbers = np.array([float(c) for c in cells])
    except ValueError:
        return np.array(cells, dtype=str), True
    return _typed_labels(spec, path, numbers, cells, dtype), False


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _typed_labels(spec, path, numbers, cells, dtype_name):
    """Class labels (int64) only when every cell is written as an integer (`3`, never `3.0` or
    `3e0`), otherwise float32 targets; `label_dtype` decides instead when it is given."""
    if dtype_name is not None:
        return _convert(spec, path + ("label_dtype",), numbers, dtype_name, "the label column")
    if all(_INTEGER.fullmatch(c) for c in cells):
        return numbers.astype(np.int64)
    return numbers.astype(np.float32)


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def _check_text_alone(spec, path, columns, groups) -> None:
    """A text column is a feature of its own (a string per element): it joins no vector of numbers."""
    text = [c.name for c in columns if c.kind == "text"]
    if not text:
        return
    together = groups.values() if groups else [[c.name for c in columns]]
    for names in together:
        if len(names) > 1 and any(n in text for n in names):
            name = next(n for n in names if n in text)
            raise spec.error(path + ("text",), f"the text column {name!r} is kept as strings, so it cannot join "
                                               f"other columns in one feature ({', '.join(names)}): make it the "
                                               f"only feature (features: [{name}]) or give it a feature of its "
                                               f"own (features: {{{name}: [{name}], ...}})")
