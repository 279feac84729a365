"""How many examples a split yields after its stages: measured, never guessed from the source.

A `window` stage makes one example per window of the split's time steps.

`take`, `skip`, `shard` and a counted `repeat` change the count in ways tf.data computes
(its cardinality); after `filter` or `unbatch` tf.data cannot tell, and the elements are
counted in one pass (no shuffle buffer, no cache file: neither changes the count).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from runner.data.stages import apply_stages, inherited_stages
from runner.spec.sections import section

# Stages that change how many examples pass (the others map or reorder them).
COUNTING = ("take", "skip", "filter", "shard", "repeat", "unbatch", "window")
_SKIPPED = ("cache", "shuffle", "prefetch")


def element_count(dataset: tf.data.Dataset) -> int | None:
    """The elements of `dataset`: tf.data's cardinality when known, else counted in one
    pass; None when it never ends."""
    known = int(dataset.cardinality())
    if known >= 0:
        return known
    if known == tf.data.INFINITE_CARDINALITY:
        return None
    return int(dataset.reduce(np.int64(0), lambda n, _: n + 1))


def split_stages(data, split: str) -> tuple[tuple, list]:
    """(path, stages) the split is built with (a validation fraction without stages: train's
    inherited ones). `data` is the `DataConfig` (or the Spec)."""
    data = section(data, "data")
    if data.split(split).inherits_train_stages:
        _, stages = inherited_stages(list(data.train.stages))
        return ("data", "train", "stages"), stages
    return ("data", split, "stages"), list(data.split(split).stages)


def examples_after_stages(spec, datasets, split: str) -> int | None:
    """The examples the split's stages let through in one pass (None: endless, or unknown).

    The source's size when no stage changes it; otherwise the per-example stages (those
    before the first `batch`) are run without shuffling or caching and their elements
    counted; a count-changing stage after the batch counts the batches' rows.
    """
    source = datasets.sources.get(split)
    if source is None:
        return None
    path, stages = split_stages(spec.sections.data, split)
    names = [next(iter(stage)) for stage in stages]
    if not any(name in COUNTING for name in names):
        return source.count
    cut = names.index("batch") if "batch" in names else len(names)
    if any(name in COUNTING for name in names[cut:]):
        return _rows(getattr(datasets, split))
    kept = [(i, stage) for i, stage in enumerate(stages[:cut]) if next(iter(stage)) not in _SKIPPED]
    if datasets.learned is not None:
        datasets.learned.restart()  # normalize ops take the statistics train learned
    prefix = apply_stages(spec, path, source.make(), [s for _, s in kept], count=source.count, info=datasets.info,
                          learned=datasets.learned, split=split, positions=[i for i, _ in kept])
    return element_count(prefix)


def steps_before_window(spec, datasets, split: str) -> int | None:
    """The time steps a windowed split cuts its windows from (None: no `window` stage)."""
    source = datasets.sources.get(split)
    path, stages = split_stages(spec.sections.data, split)
    names = [next(iter(stage)) for stage in stages]
    if source is None or "window" not in names:
        return None
    cut = names.index("window")
    if not any(name in COUNTING for name in names[:cut]):
        return source.count
    kept = [(i, stage) for i, stage in enumerate(stages[:cut]) if next(iter(stage)) not in _SKIPPED]
    if datasets.learned is not None:
        datasets.learned.restart()
    prefix = apply_stages(spec, path, source.make(), [s for _, s in kept], count=source.count, info=datasets.info,
                          learned=datasets.learned, split=split, positions=[i for i, _ in kept])
    return element_count(prefix)


def _rows(dataset) -> int | None:
    """Rows of a batched dataset, counted in one pass (None when it never ends)."""
    if dataset is None or int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY:
        return None

    def add(n, element):
        return n + tf.cast(tf.shape(tf.nest.flatten(element)[0])[0], tf.int64)

    return int(dataset.reduce(np.int64(0), add))
