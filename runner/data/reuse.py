"""Whether a split's batches are the same every epoch and small: then they can be cached.

The custom loop runs small epochs in about the time of one graph call; an input pipeline
that slices and re-batches in-memory arrays every epoch would cost more than the step
itself. When the batches cannot differ from one epoch to the next (an in-memory source,
no shuffle, no repeat: every other stage and map op is deterministic), caching them after
the last stage gives the very same epochs for the price of reading memory.
"""

from __future__ import annotations

import math

from runner.spec.sections import section

# Sources read whole into NumPy arrays when the spec is built (not re-read per epoch).
_IN_MEMORY_SOURCES = ("synthetic", "csv", "idx", "npz", "npy")
# Stages whose output can change between epochs, or never ends.
_VARYING_STAGES = ("shuffle", "repeat")
# Cached batches are a second copy of the data: only for small splits.
MAX_CACHED_BYTES = 64 * 2**20


def batches_repeat_each_epoch(data, split: str = "train") -> bool:
    """True when every epoch of `split` yields the same batches (see the module's doc).

    `data` is the `DataConfig` (or the Spec).
    """
    config = section(data, "data").split(split)
    (kind,) = config.source
    if kind not in _IN_MEMORY_SOURCES:
        return False
    return not any(next(iter(stage)) in _VARYING_STAGES for stage in config.stages)


def shuffles_by_epoch(data, split: str | None = None) -> bool:
    """Whether a pass over `split` (None: any split) reads the loop's epoch when it starts
    (a shuffle stage draws that epoch's order: see reshuffle.py). `data` is the `DataConfig` (or the Spec)."""
    data = section(data, "data")
    splits = [data.split(split)] if split else list(data.splits.values())
    return any(next(iter(stage)) == "shuffle" for s in splits for stage in s.stages)


def small_enough(dataset, examples: int | None) -> bool:
    """Whether `examples` elements of the (batched) dataset fit MAX_CACHED_BYTES."""
    if not examples:
        return False
    import tensorflow as tf

    total = 0
    for spec in tf.nest.flatten(dataset.element_spec):
        per_example = spec.shape[1:]
        if not per_example.is_fully_defined():
            return False
        total += math.prod(per_example.as_list()) * spec.dtype.size
    return total * examples <= MAX_CACHED_BYTES
