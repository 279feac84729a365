"""Tabular CSV: columns by name or index, categorical columns, missing values, fill policies.

A tabular CSV source keeps its raw columns (numbers with NaN for gaps, text) until the
validation split is made; then train's columns teach the fill values and the vocabularies
(Keras `StringLookup`/`IntegerLookup`), and every split is encoded with train's: numeric
columns as they are, categorical ones as an integer index or a one-hot vector, all
concatenated into one float32 vector (or one per named group of `features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from runner.data.learned import Learned
from runner.spec.errors import SpecError
from runner.data.source import Source


@dataclass
class Column:
    name: str
    kind: str                       # "numeric", "categorical" or "text" (kept as strings)
    mode: str = "one_hot"           # categorical: "int" or "one_hot"
    integer: bool = False           # categorical values that are all integers (IntegerLookup)
    fill: object = None             # the declared policy: mean, median, most_frequent, or a value


@dataclass
class Table:
    """The raw columns of one split and how to encode them."""

    path: tuple                     # the source's spec path, to locate errors
    columns: list                   # [Column] in feature order
    groups: dict | None             # {feature name: [column names]} when features is a mapping
    values: dict                    # column -> np.ndarray (float64 with NaN, or str with "" for gaps)
    label_names: list = field(default_factory=list)
    labels: object = None           # np.ndarray, or {name: np.ndarray}; None without labels
    text_labels: list = field(default_factory=list)  # label columns holding class names
    first_row: int = 1              # file line of the first data row (for messages)
    rows: np.ndarray = None         # each element's data row number in the file (1-based)


def table_source(table: Table, files) -> Source:
    """A Source over a Table's rows; subsets keep the Table (encoded after the split)."""

    def subset(indices):
        values = {k: v[indices] for k, v in table.values.items()}
        labels = _rows(table.labels, indices)
        part = Table(table.path, table.columns, table.groups, values, table.label_names, labels,
                     table.text_labels, table.first_row, table.rows[indices])
        return table_source(part, files)

    def select(start, stop):
        return subset(np.arange(start, stop))

    def make():
        raise RuntimeError("a tabular source is encoded (encode_tables) before its stages")

    count = len(table.rows)
    plain = None  # integer class codes, for stratifying and counting classes before the encoding
    if isinstance(table.labels, np.ndarray):
        plain = np.unique(table.labels, return_inverse=True)[1].astype(np.int64) if table.text_labels \
            else table.labels
    return Source(make, count, select, None, None, list(files), subset=subset, labels=plain, table=table)


def _rows(labels, indices):
    if labels is None:
        return None
    if isinstance(labels, dict):
        return {k: v[indices] for k, v in labels.items()}
    return labels[indices]


def encode_tables(spec, sources: dict, learned: Learned) -> dict:
    """Every tabular source encoded with what train's columns teach (learned once, saved)."""
    tabular = {split: s for split, s in sources.items() if s.table is not None}
    if not tabular:
        return sources
    if not learned.frozen:
        train = sources.get("train")
        if train is None or train.table is None:
            first = next(iter(tabular.values()))
            raise spec.error(first.table.path, "a tabular CSV split learns its encoding from train, "
                                               "but train's source is not a tabular CSV")
        _learn(spec, train.table, learned)
    return {split: (_encoded(spec, s, learned) if s.table is not None else s) for split, s in sources.items()}


def _learn(spec, table: Table, learned: Learned) -> None:
    """Fill values, then vocabularies (adapted on the filled values), then label vocabularies."""
    for column in table.columns:
        values = table.values[column.name]
        entry = {"kind": column.kind}
        missing = _missing(values)
        if column.fill is not None:
            entry["fill"] = _fill_value(column, values[~missing])
        if column.kind == "categorical":
            present = values[~missing]
            if "fill" in entry:
                present = np.concatenate([present, np.array([entry["fill"]])])  # widens text: no truncation
            layer = _lookup(column, None)
            layer.adapt(present.astype(np.int64) if column.integer else present)
            vocabulary = layer.get_vocabulary(include_special_tokens=False)
            entry["vocabulary"] = [int(v) if column.integer else str(v) for v in vocabulary]
            entry["mode"] = column.mode
        learned.columns[column.name] = entry
    labels = table.labels if isinstance(table.labels, dict) else {n: table.labels for n in table.label_names[:1]}
    for name in table.text_labels:
        learned.labels[name] = {"vocabulary": sorted(set(labels[name].tolist()))}


def _fill_value(column: Column, present: np.ndarray):
    value = _policy_value(column, present)
    return int(round(float(value))) if column.integer else value


def _policy_value(column: Column, present: np.ndarray):
    policy = column.fill
    if policy in ("mean", "median") and column.kind == "numeric":
        return float(np.mean(present) if policy == "mean" else np.median(present)) if len(present) else 0.0
    if policy == "most_frequent":
        if not len(present):
            return 0.0 if column.kind == "numeric" else ""
        kinds, counts = np.unique(present, return_counts=True)
        value = kinds[np.argmax(counts)]
        return float(value) if column.kind == "numeric" or column.integer else str(value)
    return float(policy) if column.kind == "numeric" or column.integer else str(policy)


def _missing(values: np.ndarray) -> np.ndarray:
    return np.isnan(values) if values.dtype.kind == "f" else values == ""


def _encoded(spec, source: Source, learned: Learned) -> Source:
    """The Source of encoded features (and integer labels for text labels)."""
    table = source.table
    values = {}
    for column in table.columns:
        known = learned.columns.get(column.name)
        if known is None and learned.file is not None:  # the run's own table had it: the file changed
            raise _edited(learned, f"no entry for the column {column.name!r} of the run's table")
        if known is None:
            raise spec.error(table.path, f"column {column.name!r} was not a column of train's table")
        raw = table.values[column.name]
        missing = _missing(raw)
        if missing.any() and "fill" not in known:
            raise _edited(learned, f"columns.{column.name}: no 'fill' for the column's gaps")
        if column.kind == "categorical" and "vocabulary" not in known:
            raise _edited(learned, f"columns.{column.name}: no 'vocabulary' for the categorical column")
        if missing.any():
            raw = np.where(missing, known["fill"], raw)  # np.where widens text: a longer fill fits
        values[column.name] = raw.astype(np.int64) if column.integer else raw
    labels = _encoded_labels(spec, table, learned)
    layers = {c.name: _lookup(c, learned.columns[c.name]["vocabulary"]) for c in table.columns
              if c.kind == "categorical"}
    groups = table.groups or {None: [c.name for c in table.columns]}
    by_name = {c.name: c for c in table.columns}

    def encode(row):
        features = {}
        for group, names in groups.items():
            if by_name[names[0]].kind == "text":
                features[group] = row[names[0]]  # a string: alone in its feature (checked when read)
                continue
            parts = [_encode_column(by_name[n], layers.get(n), row[n]) for n in names]
            whole = all(by_name[n].kind == "categorical" and by_name[n].mode == "int" for n in names)
            features[group] = tf.concat([p if whole else tf.cast(p, tf.float32) for p in parts], axis=0)
        return features[None] if None in features else features

    encode = tf.autograph.experimental.do_not_convert(encode)  # plain ops: nothing to convert

    def make():
        if labels is None:
            return tf.data.Dataset.from_tensor_slices(values).map(encode)
        return tf.data.Dataset.from_tensor_slices((values, labels)).map(lambda row, y: (encode(row), y))

    num_classes, class_names = _label_metadata(table, labels, learned)
    return Source(make, source.count, source.select, num_classes, class_names, source.files,
                  labels=labels if isinstance(labels, np.ndarray) else None)


def _edited(learned: Learned, problem: str) -> SpecError:
    """A run's preprocessing.json that does not fit the run's own spec: named, never the data."""
    return SpecError(f"{problem}: the file was edited or is damaged; rerun the run to rewrite it",
                     file=learned.file)


def _encode_column(column: Column, layer, value):
    if column.kind == "numeric":
        return tf.reshape(tf.cast(value, tf.float32), [1])
    encoded = layer(value)
    return tf.reshape(encoded, [1]) if column.mode == "int" else tf.reshape(tf.cast(encoded, tf.float32), [-1])


def _lookup(column: Column, vocabulary):
    """Keras StringLookup or IntegerLookup for a categorical column (index 0 is out of vocabulary)."""
    layer = keras.layers.IntegerLookup if column.integer else keras.layers.StringLookup
    return layer(vocabulary=vocabulary, output_mode=column.mode)


def _encoded_labels(spec, table: Table, learned: Learned):
    if table.labels is None or not table.text_labels:
        return table.labels
    labels = dict(table.labels) if isinstance(table.labels, dict) else {table.label_names[0]: table.labels}
    for name in table.text_labels:
        if name not in learned.labels and learned.file is not None:
            raise _edited(learned, f"no entry for the text label {name!r} of the run's table")
        vocabulary = learned.labels[name]["vocabulary"]
        index = {v: i for i, v in enumerate(vocabulary)}
        unknown = [i for i, v in enumerate(labels[name]) if v not in index]
        if unknown:
            row = int(table.rows[unknown[0]])
            raise spec.error(table.path + ("label",), f"row {row}, column {name!r}: a class train did not "
                                                      f"have ({len(unknown)} such rows; train's {len(vocabulary)} "
                                                      "classes are in the run's preprocessing.json)")
        labels[name] = np.array([index[v] for v in labels[name]], dtype=np.int64)
    return labels if isinstance(table.labels, dict) else labels[table.label_names[0]]


def _label_metadata(table, labels, learned):
    if not isinstance(labels, np.ndarray):
        return None, None
    if table.text_labels:
        vocabulary = learned.labels[table.text_labels[0]]["vocabulary"]
        return len(vocabulary), list(vocabulary)
    if labels.ndim == 1 and labels.dtype.kind in "iu" and len(labels):
        return int(labels.max()) + 1, None
    return None, None
