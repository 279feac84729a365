"""A validation fraction carved off train: shuffled with the spec's seed (or kept in order),
optionally stratified by label, with a warning when a part holds a single class."""

from __future__ import annotations

import sys

import numpy as np
import tensorflow as tf

from runner.data.source import Source


def split_fraction(held, train: Source, seed, whole: int | None = None) -> tuple[Source, Source]:
    """(train without the held-out elements, the held-out elements).

    By default the elements are shuffled once with the spec's seed before splitting, so a
    source sorted by label (class folders, sorted CSVs) puts every class on both sides.
    `shuffle: false` keeps the order and holds out the last elements (time series);
    `stratify: true` holds out the same fraction of every class. `held` is the split held out
    (its `SplitConfig`: data.validation, or data.test, carved first); `whole` the size of
    train's source before any part was held out, which fractions are of.

    Raises:
        SpecError: a fraction that leaves one side empty, or a split the source cannot make.
    """
    fraction = held.fraction
    held_out = round((whole or train.count) * fraction)  # a fraction of train's whole source
    if not 0 < held_out < train.count:
        raise held.error("fraction",
                         f"a fraction {fraction} of train's {train.count} elements leaves "
                         f"{'no validation' if held_out == 0 else 'no training'} elements", at_value=True)
    shuffle, stratify = held.shuffle, held.stratify
    if stratify and train.subset is None:
        raise held.error("stratify", "this source cannot pick elements by index (tfds with "
                                     "shuffle_files: true): set shuffle_files: false to stratify")
    if (not shuffle and not stratify) or train.subset is None:
        # tfds with shuffle_files: true reads in another order each pass, so elements cannot be
        # picked by index; tfds stores examples shuffled when it prepares them, so a slice is fair.
        kept = train.count - held_out
        parts = train.select(0, kept), train.select(kept, train.count)
    else:
        labels = source_labels(train) if stratify else None
        if stratify and labels is None:
            raise held.error("stratify", "stratify needs one integer class label per element", at_value=True)
        order = np.random.default_rng(0 if seed is None else seed).permutation(train.count) if shuffle \
            else np.arange(train.count)
        fraction = held_out / train.count
        validation = _stratified(order, labels, fraction) if stratify else order[-held_out:] if not shuffle \
            else order[:held_out]
        chosen = np.zeros(train.count, dtype=bool)
        chosen[validation] = True
        parts = train.subset(order[~chosen[order]]), train.subset(validation)
    _warn_single_class(parts, held.name)
    return parts


def _stratified(order, labels, fraction) -> np.ndarray:
    """The same fraction of every class (at least one element of a class with two or more)."""
    ordered_labels = labels[order]
    held = []
    for value in np.unique(labels):
        members = order[ordered_labels == value]
        take = round(len(members) * fraction)
        held.append(members[:max(take, 1 if len(members) > 1 else 0)])
    return np.concatenate(held)


def source_labels(source: Source):
    """Every integer class label of a source (one pass when not in memory), or None."""
    if isinstance(source.labels, np.ndarray):
        labels = source.labels
        return labels if labels.ndim == 1 and labels.dtype.kind in "iu" else None
    if source.table is not None:
        return None  # several labels, or not classes
    element = source.make().element_spec
    if not (isinstance(element, tuple) and len(element) == 2 and isinstance(element[1], tf.TensorSpec)):
        return None
    if element[1].shape.rank != 0 or not element[1].dtype.is_integer:
        return None
    values = source.make().map(lambda x, y: y).batch(4096)
    return np.concatenate([np.asarray(b) for b in values.as_numpy_iterator()] or [np.zeros(0, np.int64)])


def _warn_single_class(parts, held="validation") -> None:
    """Say so when the labels of a part are all one class: accuracy there means nothing."""
    for name, part in zip(("train", held), parts):
        labels = source_labels(part)
        if labels is None or len(labels) < 2:
            continue
        classes = np.unique(labels)
        if len(classes) == 1:
            print(f"warning: the {name} part of the {held} fraction holds only class {classes[0]} "
                  f"({len(labels)} elements); is the source sorted by label? (shuffle: true spreads the classes)",
                  file=sys.stderr, flush=True)
