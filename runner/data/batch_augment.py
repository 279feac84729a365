"""Augmentation inside the fused training step: `augment` maps on each batch, seeded by the step.

Under tf.data an `augment` map draws new random values for every element on every pass,
from its layers' own seed generators. The fused engine applies those layers (RandomFlip,
RandomRotation, GaussianNoise, ...; they draw per example within a batch) to each gathered
training batch inside its graph. Before each batch it sets the state of every seed
generator the layers draw from to a value of (the run's seed, the epoch, the step) alone,
so two runs draw the same values, and a run resumed at epoch k draws what the
uninterrupted run drew from epoch k on.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

# Steps per epoch this seeding keeps apart (a step beyond shares a later epoch's draws).
_STEPS = 2**20


@dataclass(eq=False)  # hashable by identity: the fused loop keys its traced steps by it
class BatchAugment:
    """The `augment` maps of a training split, applied to a batch (features, labels)."""

    functions: list  # the maps' element functions (their Keras layers called with training=True)
    states: list  # the seed-generator state variables those layers draw from
    where: str  # the first augment stage, for messages

    def __call__(self, batch, seed: int, epoch, step):
        """`batch` augmented with the draws of (seed, epoch, step)."""
        counter = tf.cast(epoch, tf.int64) * _STEPS + tf.cast(step, tf.int64)
        for k, state in enumerate(self.states):
            state.assign(tf.cast(tf.stack([tf.constant(seed * 1009 + k, tf.int64), counter]), state.dtype))
        for function in self.functions:
            batch = function(*batch)
        return batch


def batch_augment(functions: list, element_spec, where: str) -> BatchAugment:
    """The augmentation of `functions` (element functions of augment-only maps) on batches of
    elements of `element_spec`; the seed states they read are found by tracing them once."""

    def apply(x, y):
        batch = (x, y)
        for function in functions:
            batch = function(*batch)
        return batch

    signature = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape], s.dtype), element_spec)
    traced = tf.function(apply, autograph=False).get_concrete_function(*signature)
    return BatchAugment(functions, list(traced.variables), where)
