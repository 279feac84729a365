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


def plot_regression(train, dataset, model, run_dir) -> None:
    """predictions.png of a one-feature regression; `train` is the train split's `SplitConfig`."""
    collected = _collect(dataset, model)
    if collected is None:
        return
    x, y, predictions = collected
    truth = synthetic_truth(train.source, x)  # None unless synthetic
    from runner.outputs import plots  # matplotlib: only when plotting

    plots.plot_regression(x, y, predictions, run_dir / "predictions.png", truth=truth)


def confusion_matrices(model, dataset, collected=None, limit=10**9) -> dict:
    """A confusion matrix per classification output: {None: matrix} for a model with one output,
    {output name: matrix} for several. Regression outputs (float labels) get none; a binary
    output with one unit (labels 0 and 1, integer or float) is thresholded at 0.5 after a sigmoid, else at 0 (logits).
    `collected` (labels, predictions) of a single-output model's final evaluation spares a pass."""
    if collected is not None:
        matrix = _matrix(model, None, *collected)
        return {} if matrix is None else {None: matrix}
    labels, predictions, seen = {}, {}, 0
    predict = _compiled_predict(model, dataset.element_spec)
    for x, y in dataset:
        prediction = predict(x)
        for name, (truth, guess) in _pairs(model, y, prediction).items():
            labels.setdefault(name, []).append(np.asarray(truth))
            predictions.setdefault(name, []).append(np.asarray(tf.cast(guess, tf.float32)))
        seen += len(labels[next(iter(labels))][-1]) if labels else 0
        if seen >= limit:
            break
    matrices = {}
    for name in labels:
        matrix = _matrix(model, name, np.concatenate(labels[name]), np.concatenate(predictions[name]))
        if matrix is not None:
            matrices[name] = matrix
    return matrices


def _pairs(model, y, prediction) -> dict:
    """(labels, predictions) by output name; {None: (y, prediction)} for a single output."""
    if not isinstance(y, dict):
        return {None: (y, prediction)}
    if not isinstance(prediction, dict):
        names = list(getattr(model, "output_names", None) or [])
        prediction = dict(zip(names, prediction if isinstance(prediction, (list, tuple)) else [prediction]))
    return {name: (y[name], prediction[name]) for name in y if name in prediction}


def _matrix(model, name, y, predictions):
    binary = predictions.size == len(y) == y.size and set(np.unique(y).tolist()) <= {0, 1}
    if y.dtype.kind == "f" and not (y.ndim == 2 and y.shape[-1] > 1) and not binary:
        return None  # float labels other than 0 and 1 for one unit: a regression output
    if predictions.ndim == 2 and predictions.shape[-1] >= 2:
        labels = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
        predicted, classes = predictions.argmax(-1), predictions.shape[-1]
    elif binary:
        labels, classes = y.reshape(-1), 2
        predicted = (predictions.reshape(-1) > _binary_threshold(model, name, predictions)).astype(np.int64)
    else:
        return None
    return tf.math.confusion_matrix(labels.astype(np.int64), predicted, num_classes=classes).numpy()


def _binary_threshold(model, name, predictions) -> float:
    """0.5 for a sigmoid output, 0 for logits (by the output layer's activation when known)."""
    import keras

    layer = None
    if isinstance(model, keras.Model):
        try:
            layer = model.get_layer(name) if name else model.layers[-1]
        except ValueError:
            layer = None
    activation = getattr(layer, "activation", None)
    if activation is not None:
        return 0.5 if getattr(activation, "__name__", "") == "sigmoid" else 0.0
    return 0.5 if predictions.min() >= 0 and predictions.max() <= 1 else 0.0
