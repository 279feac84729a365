"""A loss and metrics checked against the data before training: one computation on a zero batch."""

from __future__ import annotations

import re

import keras
import tensorflow as tf

from runner.models.identifiers import keras_message, resolve_loss, resolve_metric
from runner.spec.sections import section


def example_batch(element_spec, model=None, size: int = 2):
    """Zero tensors shaped like one batch of a dataset: the batch `size` long; a size the data
    leaves unknown (a decoded image's height and width) as `model` declares its one input, else 1."""
    declared = _declared_input_shape(model, element_spec)

    def zeros(spec, fill=None):
        shape = [size if i == 0 and d is None else d if d is not None else (fill[i] if fill and fill[i] else 1)
                 for i, d in enumerate(spec.shape)]
        return tf.zeros(shape, dtype=spec.dtype)

    if declared is not None:
        return (zeros(element_spec[0], declared), *tf.nest.map_structure(zeros, tuple(element_spec[1:])))
    return tf.nest.map_structure(zeros, element_spec)


def _declared_input_shape(model, element_spec) -> tuple | None:
    """The input shape of a Keras model with one input, when the features are one tensor of its rank."""
    inputs = getattr(model, "inputs", None) if isinstance(model, keras.Model) else None
    if not (isinstance(element_spec, tuple) and isinstance(element_spec[0], tf.TensorSpec) and inputs
            and len(inputs) == 1):
        return None
    shape = tuple(inputs[0].shape)
    return shape if len(shape) == element_spec[0].shape.rank else None


def check_loss_fits(loss, model, element_spec, spec, path=("train", "loss")):
    """Compute the loss once on a zero batch so a loss/label mismatch is a located error.

    Returns:
        The `keras.losses.Loss` the loop uses (functions wrapped as `compile` does).
    """
    x, y = example_batch(element_spec, model)
    try:
        prediction = model(x)
    except Exception as e:
        raise spec.error(_model_input_path(spec), f"the model does not take the data's features "
                                                  f"{_describe(element_spec[0])}: {keras_message(e)}") from e
    try:
        loss_object = resolve_loss(loss, y, prediction)
        loss_object(y, prediction)
    except Exception as e:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", str(loss))
        labels = _describe(element_spec[1])
        predictions = _describe(prediction)
        raise spec.error(
            path,
            f"loss {name!r} does not fit labels {labels} and predictions {predictions}: "
            f"{keras_message(e)}",
        ) from e
    return loss_object


def check_metrics_fit(metrics, model, element_spec, spec, path=("train", "metrics")) -> None:
    """Update each metric once on a zero batch, so a metric that does not fit the labels
    (a sparse accuracy on one-hot labels, ...) is a located error before training, as
    `pipe plan` locates it, instead of a failure at the first step.

    Metrics of several outputs (a dict by output name) are left to the loops.
    """
    if not isinstance(metrics, list) or not metrics:
        return
    x, y = example_batch(element_spec, model)
    prediction = model(x)
    if not (tf.is_tensor(y) and tf.is_tensor(prediction)):
        return
    for i, metric in enumerate(metrics):
        try:
            probe = type(metric).from_config(metric.get_config()) if isinstance(metric, keras.metrics.Metric) \
                else metric  # a copy: the run's own metric keeps its state
            resolve_metric(probe, y, prediction).update_state(y, prediction)
        except Exception as e:
            message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*$", "", keras_message(e))
            raise spec.error((*path, i), f"metric does not fit labels {_describe(y)} and predictions "
                                         f"{_describe(prediction)}: {message}") from e


def _model_input_path(model) -> tuple:
    """Where the model's input is declared: input_shape, the functional inputs, or the model.

    `model` is the `ModelConfig` (the Spec is taken too).
    """
    model = section(model, "model")
    if "input_shape" in (model.sequential or {}):
        return ("model", "sequential", "input_shape")
    if model.declares("functional"):
        return ("model", "functional", "inputs")
    return ("model",)


def _describe(structure) -> str:
    """`(batch, 28, 28) float32` for each tensor or TensorSpec of a structure."""
    parts = []
    for t in tf.nest.flatten(structure):
        dims = ["batch", *("None" if d is None else str(d) for d in t.shape[1:])]
        shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        parts.append(f"{shape} {t.dtype.name}")
    return ", ".join(parts)
