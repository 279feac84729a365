"""Reshuffling as a function of the epoch, so a resumed run sees the orders an uninterrupted one saw.

tf.data's `reshuffle_each_iteration` draws each pass's order from a seed generator that
advances every time an iterator is made, and Keras makes more iterators than epochs: the
order of epoch k depends on everything that iterated before it, which a resumed run cannot
replay. Here epoch k's order is the shuffle of seed `(stage seed, k)`, read from the loop's
epoch variable when the pass starts; the same epoch gives the same order in any process.
"""

from __future__ import annotations

import random
import zlib

import tensorflow as tf

# Far apart per epoch, so the seeds of two stages never coincide for different epochs.
_EPOCH_STRIDE = 1_000_003


def stage_seed(spec_seed: int | None, where: tuple, seed: int | None) -> int:
    """The stage's own `seed`, else one derived from the spec's `seed` and the stage's place."""
    if seed is not None:
        return int(seed)
    if spec_seed is None:  # an unseeded run shuffles differently each time
        return random.SystemRandom().randrange(2**31)
    return zlib.crc32(f"{spec_seed}:{where}".encode("utf-8")) & 0x7FFFFFFF


def shuffle_by_epoch(dataset: tf.data.Dataset, size: int, seed: int, epoch: tf.Variable) -> tf.data.Dataset:
    """`dataset` shuffled (buffer `size`) in an order fixed by `seed` and the current `epoch`."""

    def one_pass(_):
        # Runs when an iterator first asks for an element: after the loop set the epoch.
        pass_seed = tf.constant(seed, tf.int64) + epoch.read_value() * _EPOCH_STRIDE
        graph = tf.compat.v1.get_default_graph()
        if graph.seed is not None and graph.seed % (2**31 - 1) == 0:
            # A global seed of 0 (`seed: 0`) makes TensorFlow test `(0, seed tensor) == (0, 0)`
            # as a Python bool, which fails in this graph; the pass's seed decides the order.
            graph.seed = None
        return dataset.shuffle(size, seed=pass_seed, reshuffle_each_iteration=False)

    shuffled = tf.data.Dataset.from_tensors(0).flat_map(one_pass)
    count = int(dataset.cardinality())
    if count >= 0:  # flat_map forgets the size: keep it known (progress bars, `all` sizes)
        shuffled = shuffled.apply(tf.data.experimental.assert_cardinality(count))
    return shuffled
