"""`pipe plan`: everything `pipe run` does before training, with TensorFlow, and what it found.

Builds each split's dataset and reads a bounded sample of it, builds the model, resolves the
loss, optimizer, metrics and callbacks to their full Keras config, runs one forward pass and
one loss computation on a real batch, and states the devices. Every mismatch between the
data and the model or the loss is a located error; no training step runs, nothing is written.
"""

from __future__ import annotations

import functools
import inspect
import re
import tempfile
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from runner.data.counting import examples_after_stages, steps_before_window
from runner.data.sources.image_folder import located_decode_error
from runner.models import is_keras
from runner.models.identifiers import keras_message, resolve_metric
from runner.models.loss_kinds import is_sparse
from runner.outputs.run_dir import RunDir
from runner.run.build import Build
from runner.run.engines import blamed_for_labels
from runner.spec.errors import SpecError, without_values
from runner.train.loss_check import _model_input_path
from runner.train.phases import describe_phases

SAMPLE_EXAMPLES = 4096  # class counts are read from at most this many examples per split
SPLITS = ("train", "validation", "test")


@dataclass
class Plan:
    """What a run of the spec would work with, and the mistakes found on the way."""

    devices: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"devices": self.devices, "data": self.data, "model": self.model, "train": self.train,
                "errors": [e.as_dict() for e in self.errors]}


def plan_spec(spec) -> Plan:
    """Build everything a run needs except the training itself; collect located errors.

    Raises:
        SpecError: only for mistakes after which nothing else can be built (devices, data).
    """
    plan = Plan()
    try:
        _build(spec, plan)
    except tf.errors.OpError as e:  # an image that cannot be decoded: named, located
        raise located_decode_error(spec, e) or e
    finally:
        plan.errors.sort(key=lambda e: (e.line or 0, e.column or 0))
    return plan


def _build(spec, plan) -> None:
    """The run's `Build` (runner.run.build), each step checked on real data as it comes."""
    build = Build(spec, collect=functools.partial(_collect, plan)).through("datasets")
    setup, datasets = build.setup, build.datasets
    plan.devices = {"summary": setup.summary, "strategy": setup.strategy_name, "replicas": setup.num_replicas}
    batches = {}
    for split in SPLITS:
        dataset = getattr(datasets, split)
        if dataset is not None:
            plan.data[split], batches[split] = describe_split(dataset, examples_after_stages(spec, datasets, split))
            steps = steps_before_window(spec, datasets, split)
            if steps is not None:
                plan.data[split]["time_steps"] = steps  # the examples are the windows cut from them
    from_data = {k: datasets.info[k] for k in ("class_counts", "class_weight", "output_bias") if k in datasets.info}
    if from_data:
        plan.train["from_data"] = from_data  # class_weight: balanced, bias_initializer: prior
    build.through("optimizer")
    model, optimizer = build.model, build.optimizer
    if optimizer is not None:
        plan.train["optimizer"] = keras.optimizers.serialize(optimizer)
    if model is not None and spec.sections.train.phases:
        with setup.strategy.scope():
            plan.train["phases"] = _collect(plan, lambda: describe_phases(model, spec))
    plan.train["callbacks"] = _callbacks(build, plan)
    if model is None:
        return
    fits = all([_check_forward(spec, model, split, batches[split], plan) for split in batches])  # every split
    plan.model = describe_model(model)
    if build.adapted:
        plan.model["adapted"] = build.adapted
    if not fits or build.loss is None:
        return
    loss_object = build.through("loss").loss_object  # the data's metrics are described below, not checked
    if loss_object is not None:
        per_output = getattr(loss_object, "resolved", None)  # an OutputsLoss: one loss per output
        plan.train["loss"] = ({name: keras.losses.serialize(each) for name, each in per_output.items()}
                              if per_output else keras.losses.serialize(loss_object))
        _check_loss_on_batches(spec, model, loss_object, batches, plan)
        if build.metrics is not None:
            plan.train["metrics"] = _metrics(spec, model, build.metrics, batches["train"], plan)


def describe_split(dataset, num_examples) -> tuple[dict, tuple]:
    """The element spec, one real batch, the number of batches, and class counts of a sample."""
    iterator = iter(dataset)
    first = next(iterator, None)
    cardinality = int(dataset.cardinality())
    info = {
        "element_spec": _spec_text(dataset.element_spec),
        "num_examples": num_examples,
        "steps_per_epoch": {-1: "infinite", -2: "unknown"}.get(cardinality, cardinality),
    }
    if first is None:
        info["batch"] = None
        return info, None
    info["batch"] = _spec_text(tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), first))
    counts, seen = {}, 0
    batch = first
    while batch is not None and seen < SAMPLE_EXAMPLES:
        labels = batch[1] if isinstance(batch, tuple) and len(batch) == 2 else None
        if labels is None or isinstance(labels, dict):
            break
        values = labels.numpy()
        if values.ndim > 1 and values.shape[-1] > 1:
            values = values.argmax(-1)  # one-hot labels
        elif values.dtype.kind == "f" and not np.all((values == 0) | (values == 1)):
            break  # float targets are regression targets, whole numbers or not: no classes
        for value, count in zip(*np.unique(values.astype(np.int64), return_counts=True)):
            counts[int(value)] = counts.get(int(value), 0) + int(count)
        seen += len(values.reshape(-1)) if values.ndim <= 1 else values.shape[0]
        batch = next(iterator, None)
    if counts:
        info["class_counts"] = {"sampled_examples": seen, "counts": dict(sorted(counts.items()))}
    return info, first


def describe_model(model) -> dict:
    """Keras: layers with output shapes and parameter counts; tf.Module: its variables."""
    if not is_keras(model):
        variables = [{"name": v.name, "shape": list(v.shape), "dtype": v.dtype.name} for v in model.variables]
        return {"kind": "tf.Module", "class": type(model).__name__, "variables": variables,
                "params": int(sum(np.prod(v.shape) for v in model.variables))}
    layers = []
    for layer in model.layers:
        try:
            shape = _shape_text(layer.output.shape)
        except (AttributeError, ValueError):
            shape = None
        layers.append({"name": layer.name, "class": type(layer).__name__, "output_shape": shape,
                       "params": int(layer.count_params()) if layer.built else 0})
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    total = int(sum(np.prod(v.shape) for v in model.weights))
    return {"kind": "keras", "class": type(model).__name__, "name": model.name, "layers": layers,
            "inputs": [_shape_text(t.shape) for t in _symbolic(model, "inputs")] or None,
            "outputs": [_shape_text(t.shape) for t in _symbolic(model, "outputs")] or None,
            "params": {"total": total, "trainable": trainable, "non_trainable": total - trainable}}


def _symbolic(model, which: str) -> list:
    """The model's symbolic `inputs`/`outputs`, or [] for a model that was never built: a
    Sequential without input_shape whose first call failed raises on the attribute itself."""
    try:
        return list(getattr(model, which, None) or [])
    except (AttributeError, ValueError):
        return []


def _collect(plan, build):
    """`build()`, or None with its located error kept in the plan."""
    try:
        return build()
    except SpecError as e:
        plan.errors += getattr(e, "errors", [e])
        return None


def _check_forward(spec, model, split, batch, plan) -> bool:
    """One forward pass on a real batch of `split`: the data must fit the model's input."""
    if batch is None:
        return True
    x = batch[0] if isinstance(batch, tuple) else batch
    try:
        model(x)
        return True
    except Exception as e:
        expects = ""
        if is_keras(model) and _symbolic(model, "inputs"):
            expects = "; the model takes " + ", ".join(_shape_text(t.shape) + " " + t.dtype
                                                       for t in _symbolic(model, "inputs"))
        plan.errors.append(spec.error(_model_input_path(spec), f"data.{split} does not fit the model's input: it gives "
                                      f"{_spec_text(tf.nest.map_structure(_tensor_spec, x))}{expects}: "
                                      f"{_short_message(e)}"))
        return False


def _check_loss_on_batches(spec, model, loss_object, batches, plan) -> None:
    """The loss on one real batch of each split: labels out of range, wrong shapes, NaN."""
    values = {}
    for split, batch in batches.items():
        if batch is None or not isinstance(batch, tuple) or len(batch) != 2:
            continue
        x, y = batch
        prediction = model(x)
        try:
            value = float(loss_object(y, prediction))
        except Exception as e:
            plan.errors.append(spec.error(blamed_for_labels(spec, split), f"loss {loss_object.name!r} does not fit "
                                          f"the labels of data.{split} ({_spec_text(_tensor_spec(y))}): {_short_message(e)}"))
            continue
        _check_label_classes(spec, split, loss_object, prediction, plan)
        mismatch = _shape_mismatch(loss_object, y, prediction)
        if mismatch:
            plan.errors.append(spec.error(blamed_for_labels(spec, split),
                                          f"loss {loss_object.name!r} on data.{split}: {mismatch}"))
        if not np.isfinite(value):
            plan.errors.append(spec.error(blamed_for_labels(spec, split), f"loss {loss_object.name!r} is {value} on the first "
                                          f"batch of data.{split}: check the labels and the model's output"))
        values[split] = value
    plan.train["loss_on_first_batch"] = values


def _metrics(spec, model, metrics, batch, plan) -> list:
    """Each metric as `compile` makes it for these labels, updated once on a real batch."""
    if batch is None or not isinstance(batch, tuple) or isinstance(metrics, dict):
        return []  # per-output metrics are resolved per output by the loops, not described here
    x, y = batch
    prediction = model(x)
    described = []
    for i, metric in enumerate(metrics):
        try:
            resolved = resolve_metric(metric, y, prediction)
            resolved.update_state(y, prediction)
            described.append({"class": type(resolved).__name__, "config": resolved.get_config(),
                              "value_on_first_batch": float(resolved.result())})
        except Exception as e:
            plan.errors.append(spec.error(("train", "metrics", i), f"metric does not fit the labels "
                                          f"{_spec_text(_tensor_spec(y))}: {keras_message(e)}"))
    return described


def _callbacks(build, plan) -> list:
    """Each callback constructed (in a throwaway directory) and its constructor's values."""
    described = []
    with tempfile.TemporaryDirectory() as scratch:
        callbacks = _collect(plan, lambda: build.callbacks(RunDir(scratch)))
        for callback in callbacks or []:
            parameters = inspect.signature(type(callback).__init__).parameters
            config = {name: _plain(getattr(callback, name)) for name in parameters
                      if name != "self" and hasattr(callback, name)}
            described.append({"class": type(callback).__name__, "config": config})
    return described


def _check_label_classes(spec, split, loss_object, prediction, plan) -> None:
    """Class labels of a sparse loss outside the model's classes, among the split's sampled
    examples (a shuffled split's stray label may lie past its first batch; under XLA such a
    label makes the loss NaN instead of an error)."""
    class_counts = plan.data[split].get("class_counts")
    if (not is_sparse(loss_object) or not class_counts or not tf.is_tensor(prediction)
            or prediction.shape[-1] in (None, 1)):
        return
    classes = int(prediction.shape[-1])
    outside = [label for label in class_counts["counts"] if not 0 <= label < classes]
    if outside:
        plan.errors.append(spec.error(blamed_for_labels(spec, split), (
            f"data.{split}: labels {', '.join(map(str, outside))} in the first {class_counts['sampled_examples']} "
            f"examples lie outside the model's {classes} classes (0 to {classes - 1})")))


def _shape_mismatch(loss_object, y, prediction) -> str | None:
    """Labels and predictions a loss would broadcast against each other instead of pairing.

    Keras's element-wise losses (mse, binary crossentropy, ...) broadcast a (batch, 10)
    label against a (batch, 1) prediction without a word; sparse losses take one integer
    label per prediction row.
    """
    if isinstance(y, dict) or isinstance(prediction, (list, tuple, dict)):
        return None
    labels, predicted = list(y.shape[1:]), list(prediction.shape[1:])
    # Sparse losses take a class index per row.
    if is_sparse(loss_object):
        expected = predicted[:-1]
        if labels in (expected, expected + [1]):
            return None
        what = f"one integer label per row, shaped {_shape_text([None] + expected)}"
    else:
        if labels == predicted or labels + [1] == predicted or labels == predicted + [1]:
            return None
        what = f"labels shaped like the predictions, {_shape_text(prediction.shape)}"
    return (f"labels {_shape_text(y.shape)} and predictions {_shape_text(prediction.shape)} do not pair up "
            f"(Keras would broadcast them); it needs {what}")


def _short_message(error) -> str:
    """Keras's message without tensor dumps, terminal colours and op names."""
    text = re.sub(r"\x1b\[[0-9;]*m|\[[0-9;]*m", "", keras_message(error))
    shape = re.search(r"Expected shape \([^)]*\)(, but input has incompatible shape \([^)]*\))?", text)
    if shape:
        return shape.group(0)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return without_values(re.split(r"\s+Label values:|\s+\[Op:", text)[0]).strip()


def _tensor_spec(t):
    return tf.TensorSpec(t.shape, t.dtype)


def _shape_text(shape) -> str:
    dims = ["batch" if i == 0 and d is None else str(d) for i, d in enumerate(shape)]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _spec_text(structure):
    """TensorSpecs as `(batch, 28, 28) float32`, in the structure they come in."""
    if isinstance(structure, dict):
        return {k: _spec_text(v) for k, v in structure.items()}
    if isinstance(structure, (tuple, list)):
        return [_spec_text(v) for v in structure]
    return f"{_shape_text(structure.shape)} {structure.dtype.name}"


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return repr(value)
