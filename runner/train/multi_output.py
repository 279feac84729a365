"""Models with several outputs: per-output losses, loss weights and metrics, as Keras compiles them.

A spec gives `loss: {output name: loss}`, `loss_weights: {output name: weight}` and
`metrics: {output name: [metrics]}`. `fit` takes them as Keras's own dicts; the custom loop
takes one `OutputsLoss` (the weighted sum of each output's per-example loss) and one
`OutputMetric` per output and metric, named `<output>_<metric>` as `fit` names them.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from runner.models.identifiers import get_loss, get_metrics, resolve_loss, resolve_metric
from runner.spec.sections import TrainConfig
from runner.train.loss_check import example_batch


def resolve_outputs(train, spec, model, element_spec):
    """(loss, metrics) of `train:` for this model: Keras identifiers, or per-output ones.

    `train` is the `TrainConfig` (or the `train:` mapping as the spec writes it).

    Per-output losses become one `OutputsLoss` (its `per_output` dict and `loss_weights`
    are what `fit` compiles with); per-output metrics a dict {output: [metrics]}.

    Raises:
        SpecError: keys that are not output names, labels not named like the outputs, or
            loss_weights on a model with one output.
    """
    names = output_names(model)
    train = train if isinstance(train, TrainConfig) else TrainConfig.of(train)
    loss_config, metrics_config, weights = train.loss, train.metrics, train.loss_weights
    check_per_output(loss_config, names, spec, "loss")
    check_per_output(metrics_config, names, spec, "metrics")
    if weights is not None and len(names) < 2:
        raise spec.error(("train", "loss_weights"), "loss_weights weigh the losses of several outputs; "
                                                    "this model has one")
    weights = weights_list(weights, names)
    if weights is not None:
        check_per_output(weights, names, spec, "loss_weights")
    if is_per_output(loss_config, names):
        _check_labels(spec, names, element_spec)
        x, y = example_batch(element_spec, model)
        loss = OutputsLoss(get_output_losses(loss_config, spec), weights, names, y, model(x))
    else:
        loss = get_loss(loss_config, spec)
    if is_per_output(metrics_config, names):
        return loss, get_output_metrics(metrics_config, spec)
    return loss, get_metrics(metrics_config, spec)


def _check_labels(spec, names, element_spec) -> None:
    labels = element_spec[1] if isinstance(element_spec, tuple) and len(element_spec) == 2 else None
    if not isinstance(labels, dict) or not set(names) <= set(labels):
        found = "none" if labels is None else ", ".join(labels) if isinstance(labels, dict) else "one tensor"
        raise spec.error(("train", "loss"), f"per-output losses need labels named like the outputs "
                                            f"({', '.join(names)}); the data's labels are: {found}",
                         "name the label columns, keys or features like the model's outputs")


def output_names(model) -> list[str]:
    """The names of a Keras model's outputs (one name for a single output; none for a tf.Module)."""
    if not isinstance(model, keras.Model):  # a reloaded SavedModel may know them (runner.commands.evaluation)
        return list(getattr(model, "output_names", None) or [])
    try:
        if isinstance(model.output, dict):
            return list(model.output)
        return list(getattr(model, "output_names", None) or [])
    except (AttributeError, ValueError):  # a Sequential model not called yet: one output
        return []


def is_per_output(config, names) -> bool:
    """Whether a loss/metrics value is a mapping keyed by output names (not a Keras identifier)."""
    return isinstance(config, dict) and "class_name" not in config and len(names) > 1 \
        and bool(config) and set(config) <= set(names)


def check_per_output(config, names, spec, key) -> None:
    """A mapping whose keys are not all output names is a located error (with the names)."""
    if isinstance(config, dict) and len(names) > 1 and "class_name" not in config and not is_per_output(config, names):
        unknown = [k for k in config if k not in names]
        if key != "loss" or not unknown[0][:1].isupper():
            raise spec.error(("train", key, unknown[0]), f"no model output named {unknown[0]!r} "
                                                        f"(outputs: {', '.join(names)})")


def get_output_losses(config: dict, spec) -> dict:
    return {name: get_loss(identifier, spec, ("train", "loss", name)) for name, identifier in config.items()}


def get_output_metrics(config: dict, spec) -> dict:
    return {name: get_metrics(identifiers, spec, ("train", "metrics", name)) for name, identifiers in config.items()}


def _by_name(values, names):
    """Predictions or labels keyed by output name (Keras gives a list for list outputs)."""
    if isinstance(values, dict):
        return values
    return dict(zip(names, values))


class OutputsLoss(keras.losses.Loss):
    """The weighted sum of each output's per-example loss (one value per example)."""

    def __init__(self, losses: dict, weights: dict | None, names: list, y, prediction):
        super().__init__(name="loss")
        y, prediction = _by_name(y, names), _by_name(prediction, names)
        self.names = names
        self.per_output = losses  # what `fit` compiles with
        self.resolved = {k: resolve_loss(loss, y[k], prediction[k]) for k, loss in losses.items()}
        self.loss_weights = weights  # as declared, for compile
        self.output_weights = {k: float((weights or {}).get(k, 1.0)) for k in losses}

    def call(self, y_true, y_pred):
        y_true, y_pred = _by_name(y_true, self.names), _by_name(y_pred, self.names)
        total = 0.0
        for name, loss in self.resolved.items():
            values = loss.call(y_true[name], y_pred[name])
            rank = values.shape.rank
            if rank is not None and rank > 1:
                values = tf.reduce_mean(values, axis=list(range(1, rank)))
            total = total + self.output_weights[name] * tf.cast(values, tf.float32)
        return total


class OutputMetric(keras.metrics.Metric):
    """One metric of one output, named `<output>_<metric>` as Keras fit names it."""

    def __init__(self, output: str, metric, names: list):
        super().__init__(name=f"{output}_{metric.name}")
        self.output, self.metric, self.names = output, metric, names

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _by_name(y_true, self.names), _by_name(y_pred, self.names)
        self.metric.update_state(y_true[self.output], y_pred[self.output], sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


class OutputLoss(keras.metrics.Mean):
    """The loss of one output, unweighted, named `<output>_loss`, averaged as Keras fit
    averages it: the mean of each batch's mean (fit's batches have no static size, and a
    batch of unknown size counts once, a smaller last one too)."""

    def __init__(self, output: str, loss, names: list):
        super().__init__(name=f"{output}_loss")
        self.output, self.loss, self.names = output, loss, names

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _by_name(y_true, self.names), _by_name(y_pred, self.names)
        values = self.loss.call(y_true[self.output], y_pred[self.output])
        count = tf.cast(tf.size(values), values.dtype)
        # An empty share of a batch (more replicas than examples) counts for nothing.
        super().update_state(tf.math.divide_no_nan(tf.reduce_sum(values), count), sample_weight=tf.minimum(count, 1.0))


def loop_metrics(metrics, model, element_spec, loss=None) -> list:
    """The custom loop's metrics: each output's loss (with per-output losses), then the
    per-output metrics resolved against their output and wrapped, as fit reports them."""
    per_output_loss = isinstance(loss, OutputsLoss)
    if not isinstance(metrics, dict) and not per_output_loss:
        return metrics
    names = output_names(model)
    x, y = example_batch(element_spec, model)
    y, prediction = _by_name(y, names), _by_name(model(x), names)
    losses = [OutputLoss(name, resolved, names) for name, resolved in loss.resolved.items()] if per_output_loss else []
    if not isinstance(metrics, dict):
        return losses + list(metrics or [])
    return losses + [OutputMetric(name, resolve_metric(m, y[name], prediction[name]), names)
                     for name, identifiers in metrics.items() for m in identifiers]


def weights_list(weights, names):
    """loss_weights as Keras compile takes them (a dict by output name, or a list in order)."""
    if weights is None or isinstance(weights, dict):
        return weights
    return dict(zip(names, weights))
