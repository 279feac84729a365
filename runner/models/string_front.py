"""A Keras model that takes strings, split where its fixed lookups turn them into numbers.

A model whose string inputs go straight into adapted lookup layers (`TextVectorization`
with a fixed `output_sequence_length`, `StringLookup`, `Hashing`) gives, for each example,
the same numbers from those layers on every epoch and in training as in inference: they
hold no trained weights and draw no randomness. So a split can be looked up once and held
as those numbers (`StringFront.encode`), and the rest of the model (`StringFront.body`, a
functional model over the lookups' outputs that shares the model's own layers and weights)
trained on them. The model itself is unchanged: the one that is saved and that `pipe
predict` feeds still takes raw strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

# Lookups whose output for an example depends on that example alone (no batch padding).
_FIXED_LOOKUPS = (keras.layers.TextVectorization, keras.layers.StringLookup, keras.layers.Hashing)


@dataclass
class StringFront:
    """The lookups that take the model's string inputs, and the model after them."""

    body: keras.Model  # takes `encode`'s list: the other inputs, then each lookup's output
    lookups: list  # (input position, layer)
    others: list  # positions of the inputs that are not strings, passed on unchanged
    names: str  # the lookups, for the engine's reason ("TextVectorization 'vectorize'")
    input_names: list  # the model's inputs' names, in the order of `model.inputs`

    def encode(self, x):
        """The body's inputs for features `x` (one tensor, a list in the model's order, or a
        dict by input name, as Keras matches them)."""
        flat = [x[name] for name in self.input_names] if isinstance(x, dict) else keras.tree.flatten(x)
        return [flat[i] for i in self.others] + [layer(flat[i]) for i, layer in self.lookups]

    def encoded_spec(self, features):
        """The spec of one example's `encode`d features, from the spec of its `features`."""
        batched = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape], s.dtype), features)
        traced = tf.function(self.encode, autograph=False).get_concrete_function(batched)
        return [tf.TensorSpec(t.shape[1:], t.dtype) for t in traced.structured_outputs]


def string_front(model) -> tuple[StringFront | None, str]:
    """The split of `model` at its string inputs' lookups, or None and why it has none.

    "" as the reason means the model takes no strings (nothing to split).
    """
    inputs = getattr(model, "inputs", None) if isinstance(model, keras.Model) else None
    if not inputs:
        return None, "the model is not a Keras model with declared inputs"
    strings = [i for i, t in enumerate(inputs) if t.dtype == "string"]
    if not strings:
        return None, ""
    if len(strings) < len(inputs):
        # The model after the lookups would take the other inputs' own Input tensors, and a
        # second model over a model's Input leaves it unsaveable (Keras 3.15: "could not find
        # node key"): the model that is saved matters more.
        name = next(t.name for t in inputs if t.dtype != "string")
        return None, (f"the model takes strings and numbers (input '{name}'); only a model whose every "
                      "input is looked up is split")
    lookups, outputs = [], []
    for position in strings:
        consumers = [layer for layer in model.layers if _takes(layer, inputs[position])]
        name = inputs[position].name
        if len(consumers) != 1:
            return None, f"the model input '{name}' goes to {len(consumers)} layers (a lookup alone can be held)"
        layer = consumers[0]
        described = f"{type(layer).__name__} '{layer.name}'"
        if not isinstance(layer, _FIXED_LOOKUPS):
            return None, f"the model input '{name}' goes to {described}, not a lookup"
        if isinstance(layer, keras.layers.TextVectorization) and _varying_length(layer):
            return None, f"{described} gives each batch its own length of ids (no output_sequence_length)"
        if layer.trainable_weights:
            return None, f"{described} has trained weights"
        lookups.append((position, layer))
        outputs.append(layer.output)
    others = [i for i in range(len(inputs)) if i not in strings]
    try:
        body = keras.Model([inputs[i] for i in others] + outputs, model.outputs)
    except (ValueError, TypeError) as e:  # an input that reaches an output around its lookup
        return None, f"the model after its lookups is not a model of their outputs ({e})"
    names = ", ".join(f"{type(layer).__name__} '{layer.name}'" for _, layer in lookups)
    return StringFront(body, lookups, others, names, [t.name for t in inputs]), ""


def _takes(layer, tensor) -> bool:
    try:
        taken = layer.input
    except (AttributeError, ValueError):  # an InputLayer, or a layer called more than once
        return False
    return any(t is tensor for t in keras.tree.flatten(taken))


def _varying_length(layer) -> bool:
    """Ids padded to each batch's longest text (or ragged): not one shape for the split."""
    config = layer.get_config()
    return config.get("output_mode") == "int" and not config.get("output_sequence_length")

