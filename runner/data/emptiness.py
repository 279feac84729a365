"""An empty split is found before training: an epoch of nothing trains nothing, silently."""

from __future__ import annotations

import tensorflow as tf


def check_not_empty(split, dataset: tf.data.Dataset) -> None:
    """Raise a located error when `dataset`, the split `split` (a `SplitConfig`), has no
    element after its stages.

    tf.data knows the size after most stages; after `filter` it does not, and the first
    element is read to find out (a filter that keeps nothing reads the split once).

    Raises:
        SpecError: located at the split's stages (or its source when it has none).
    """
    size = int(dataset.cardinality())
    if size == tf.data.INFINITE_CARDINALITY or size > 0:
        return
    if size == tf.data.UNKNOWN_CARDINALITY:
        for _ in dataset.take(1):
            return
    where = "stages" if split.stages else None
    raise split.error(where, f"the {split.name} split is empty after its stages (filter, skip, take or "
                             "batch with drop_remainder left no element): there is nothing to "
                             f"{'train on' if split.name == 'train' else 'evaluate'}")
