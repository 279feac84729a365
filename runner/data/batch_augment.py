"""`augment` maps seeded by where they are in training, so runs repeat and resume exactly.

Keras random layers (RandomFlip, RandomRotation, GaussianNoise, ...) draw from their own
seed generators, whose states advance with every call: under a parallel tf.data map the
order of those calls, and so every draw, changes from run to run. Here, before each call,
the state of every seed generator the layers draw from is set to a value of (the run's
seed, the epoch, the step) alone: two runs draw the same values, and a run resumed at epoch
k draws what the uninterrupted run drew from epoch k on. The fused engine calls the layers
on each gathered training batch inside its graph (a step is a batch; the layers draw per
example within it); under tf.data the map calls them on one element at a time (a step is
the element's place in the pass).
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
    # The specs of (x, y) of an augmented batch, any batch size: Keras's random layers give
    # floats (their compute dtype) for uint8 pixels, which the step then takes.
    output_signature: object = None

    @property
    def xla_refusals(self) -> list:
        """The names of the layers Keras says XLA cannot compile (`supports_jit`, as it judges
        a model's layers: RandomRotation's and RandomZoom's projective transform has no XLA kernel)."""
        layers = [layer for function in self.functions for layer in getattr(function, "layers", ())]
        return list(dict.fromkeys(type(layer).__name__ for layer in layers if not layer.supports_jit))

    def __call__(self, batch, seed: int, epoch, step):
        """`batch` augmented with the draws of (seed, epoch, step)."""
        counter = tf.cast(epoch, tf.int64) * _STEPS + tf.cast(step, tf.int64)
        for k, state in enumerate(self.states):
            state.assign(tf.cast(tf.stack([tf.constant(seed * 1009 + k, tf.int64), counter]), state.dtype))
        for function in self.functions:
            batch = function(*batch)
        return batch


def batch_augment(functions: list, element_spec, where: str, batched: bool = True) -> BatchAugment:
    """The augmentation of `functions` (element functions of maps with augment ops) on batches
    of elements of `element_spec` (or on the elements themselves, `batched=False`); the seed
    states they read are found by tracing them once."""

    def apply(*batch):
        for function in functions:
            batch = function(*batch)
        return batch

    def spec(s):
        return tf.TensorSpec([None, *s.shape], s.dtype) if batched else s

    signature = tf.nest.map_structure(spec, tuple(element_spec) if isinstance(element_spec, tuple) else (element_spec,))
    traced = tf.function(apply, autograph=False).get_concrete_function(*signature)
    # A seed generator's state is a pair of integers; other variables (none today) are not touched.
    states = [v for v in traced.variables if v.shape == (2,) and v.dtype.is_integer]
    output = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]] if batched else t.shape, t.dtype),
                                   traced.structured_outputs)
    return BatchAugment(functions, _in_layer_order(states, functions), where, output)


def _in_layer_order(states: list, functions: list) -> list:
    """`states` in the order of the layers that hold them: each takes its seed by its place
    in this list, and a traced graph lists its variables in no stable order (two builds of
    one spec gave RandomRotation's and RandomZoom's generators in either order)."""
    layers = [layer for function in functions for layer in getattr(function, "layers", ())]
    held = [getattr(v, "value", v) for layer in layers for v in layer.variables]
    place = {id(v): i for i, v in enumerate(held)}
    return sorted(states, key=lambda state: place.get(id(state), len(held)))  # others after, as traced


def augment_elements(dataset: tf.data.Dataset, function, seed: int, epoch: tf.Variable, where: str):
    """`dataset.map(function)` for a training map holding `augment` ops: each element draws what
    (seed, epoch, its place in the pass) give it. The map takes one element at a time, since
    its layers share their seed states; the pass's epoch is read when the pass starts."""
    augment = batch_augment([function], dataset.element_spec, where, batched=False)
    labelled = isinstance(dataset.element_spec, tuple)

    def apply(index, element):
        return augment(element if labelled else (element,), seed, epoch.read_value(), index)

    return dataset.enumerate().map(apply, num_parallel_calls=None, deterministic=True)
