"""Predictions for the plots: the regression curve and the confusion matrix."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from runner.data import synthetic_truth
from runner.models import is_keras

# Plots draw every example; beyond this many they say little and cost much.
_MAX_PLOTTED_EXAMPLES = 100_000


def is_1d_regression(element_spec) -> bool:
    if not isinstance(element_spec, tuple) or len(element_spec) != 2:
        return False
    x, y = element_spec
    return (
        isinstance(x, tf.TensorSpec) and isinstance(y, tf.TensorSpec)
        and x.dtype.is_floating and y.dtype.is_floating
        and x.shape[1:].num_elements() == 1 and y.shape[1:].num_elements() == 1
    )


def is_classification(element_spec) -> bool:
    if not isinstance(element_spec, tuple) or len(element_spec) != 2:
        return False
    y = element_spec[1]
    if not isinstance(y, tf.TensorSpec):
        return False
    sparse = y.dtype.is_integer and y.shape[1:].num_elements() in (0, 1)
    one_hot = y.shape.rank == 2 and (y.shape[-1] or 0) > 1
    return sparse or one_hot


def _predict(model, x):
    if is_keras(model):
        return model(x, training=False)
    return model(x)


def _compiled_predict(model, element_spec):
    """The model's inference as one graph for every batch (eager Keras calls cost
    milliseconds each: more than the prediction itself on small models)."""
    features = element_spec[0]
    signature = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape[1:]], s.dtype), features)
    return tf.function(lambda x: _predict(model, x), input_signature=[signature], autograph=False)


def _collect(dataset, model, limit=_MAX_PLOTTED_EXAMPLES, features=True):
    """Features (or None), labels and predictions of a dataset as numpy arrays (up to `limit`)."""
    xs, ys, ps, seen = [], [], [], 0
    predict = _compiled_predict(model, dataset.element_spec)
    for x, y in dataset:
        if features:
            xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        ps.append(np.asarray(tf.cast(predict(x), tf.float32)))
        seen += len(ys[-1])
        if seen >= limit:
            break
    if not ys:
        return None
    return np.concatenate(xs) if features else None, np.concatenate(ys), np.concatenate(ps)


def plot_regression(spec, dataset, model, run_dir) -> None:
    collected = _collect(dataset, model)
    if collected is None:
        return
    x, y, predictions = collected
    truth = synthetic_truth(spec.doc["data"]["train"]["source"], x)  # None unless synthetic
    from runner.outputs import plots  # matplotlib: only when plotting

    plots.plot_regression(x, y, predictions, run_dir / "predictions.png", truth=truth)


def confusion_matrix(model, dataset, collected=None):
    """Counts of (true, predicted) classes; from `collected` (labels, predictions) when given,
    else from a pass of the model over the dataset."""
    if collected is None:
        collected = _collect(dataset, model, limit=10**9, features=False)
        collected = collected and collected[1:]
    if not collected:
        return None
    y, predictions = collected
    if predictions.ndim != 2 or predictions.shape[-1] < 2:
        return None
    labels = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
    classes = predictions.shape[-1]
    return tf.math.confusion_matrix(labels.astype(np.int64), predictions.argmax(-1), num_classes=classes).numpy()
