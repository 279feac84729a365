"""The engine interface of `pipe run`: what every engine is given, what it returns, and
the set-up and wrap-up written once around it (`train_with`).

An engine (Keras `fit` and the GradientTape loop in `runner.run.loops`, the fused engine in
`runner.run.fused`) trains every epoch, calling `context.progress.epoch_end(...)` after
each, and returns its tables with a way to evaluate a held-out split. `train_with` then
aligns the validation columns, writes the history to TensorBoard when the engine did not,
and evaluates each held-out split; a step that failed inside the loss or under XLA becomes
a located error. A new engine implements `Engine` and plugs into the choice
(`runner.run.choice`); nothing else changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import tensorflow as tf

from runner.outputs import history
from runner.train.log_order import in_order, logged_names
from runner.train.result import TrainResult, evaluate_held_out, final_train_metrics
from runner.spec.errors import without_values


@dataclass
class TrainingContext:
    """What every engine needs to train a run: the built objects and where progress goes.

    Attributes:
        spec: the `Spec` (its typed sections: `train`, `outputs`, `seed`).
        setup: the `DeviceSetup` (strategy, replicas, jit_compile).
        datasets: the run's `Datasets`; `validation`: the one validated on after each epoch, or None.
        model, loss, optimizer, metrics: as `runner.run.build.Build` made them (`loss`: checked).
        callbacks: the spec's Keras callbacks, made once for this run directory.
        run_dir: the `RunDir`; `progress`: its `runner.run.epoch_end.Progress`.
        quiet: no progress bars or report lines; `profiler`: a `StepProfiler`, or None.
    """

    spec: object
    setup: object
    datasets: object
    validation: object
    model: object
    loss: object
    optimizer: object
    metrics: object
    callbacks: list
    run_dir: Path
    quiet: bool
    progress: object
    profiler: object = None

    @property
    def train(self):
        """The `TrainConfig`."""
        return self.spec.sections.train

    @property
    def outputs(self):
        """The `OutputsConfig`."""
        return self.spec.sections.outputs

    @property
    def seed(self):
        return self.spec.sections.seed


@dataclass
class TrainingResult:
    """What an engine returns: its tables, and how it evaluates a held-out split.

    Attributes:
        trained: the tables of the epochs it trained (`train_with` completes them from the
            run's progress: a resumed run's earlier epochs).
        evaluate: `(dataset, split, result) -> {metric: value}`; it may set
            `result.predictions` (the test split's, for the confusion matrix).
        wrote_tensorboard: the engine wrote the history to TensorBoard itself (Keras's callback).
    """

    trained: TrainResult
    evaluate: Callable
    wrote_tensorboard: bool = False


@runtime_checkable
class Engine(Protocol):
    """An engine that trains a run, and why it was chosen."""

    name: str  # as the manifest's `engine` says it: "keras" or "fused"
    reason: str

    @property
    def line(self) -> str:
        """`engine: <name> (<reason>)`, for the user."""

    def train(self, context: TrainingContext) -> TrainingResult:
        """Train every epoch left, calling `context.progress.epoch_end(...)` after each."""


def train_with(engine: Engine, context: TrainingContext) -> tuple[TrainResult, dict]:
    """Train with `engine`, then evaluate: (the whole run's tables, final metrics by split).

    Raises:
        SpecError: a training step failed inside the loss (labels that do not fit it), or
            XLA could not compile it (located at train.loss or device.jit_compile).
    """
    context.progress.order = logged_names(context.metrics, context.loss)  # every engine's tables in the spec's order
    try:
        return _train_and_evaluate(engine, context)
    except tf.errors.InvalidArgumentError as e:
        raise loss_error(context.spec, context.loss, e) or xla_error(context.spec, context.setup, e) or e


def _train_and_evaluate(engine, context):
    train = context.train
    trained = engine.train(context)
    result = context.progress.result(trained.trained)
    result.history = in_order(align_validation(result.history, train.validation_freq, train.initial_epoch),
                              context.progress.order)
    if context.outputs.tensorboard and not trained.wrote_tensorboard:
        history.write_tensorboard(context.run_dir, result.history)
    final = final_train_metrics(result.history, context.callbacks, train.initial_epoch)
    evaluation = evaluate_held_out(train, context.datasets, context.validation, result, final,
                                   lambda dataset, split: evaluating(context.spec, context.loss, split,
                                                                     trained.evaluate, dataset, split, result))
    return result, {split: in_order(values, context.progress.order) for split, values in evaluation.items()}


def evaluating(spec, loss, split: str, evaluate, *args):
    """`evaluate(*args)` on `split`: a step failing inside the loss is that split's labels'
    (pipe run's held-out splits, pipe evaluate's)."""
    try:
        return evaluate(*args)
    except tf.errors.InvalidArgumentError as e:
        raise loss_error(spec, loss, e, split) or e


def align_validation(history: dict, frequency: int, first_epoch: int) -> dict:
    """Validation columns one value per epoch (None where `validation_freq` skipped the epoch)."""
    epochs = len(history.get("loss", []))
    validated = [i for i in range(epochs) if (first_epoch + i + 1) % frequency == 0]  # as Keras counts
    aligned = {}
    for key, values in history.items():
        if key.startswith("val_") and len(values) == len(validated) < epochs:
            full = [None] * epochs
            for i, value in zip(validated, values):
                full[i] = value
            values = full
        aligned[key] = values
    return aligned


def loss_error(spec, loss, error, split: str | None = None):
    """A located error when a step failed inside the loss (e.g. labels out of range), naming
    the split whose labels it met.

    Keras computes the loss under the name scope `compile_loss`, the custom loop under
    `loss`; an op failing there means the labels do not fit the loss. `split` is the split
    being evaluated; without it, the step is training's (data.train) unless the op was made
    by an evaluation step, which training runs on data.validation only. A split other than
    train is blamed itself (`data.test`): train's labels fit the same loss and model.
    """
    text = error.message or ""
    if not re.search(r"node (\S*/)?(compile_)?loss/", text):
        return None
    if split is None:
        split = "validation" if re.search(r"\bin (test_step|_test_step|_evaluate_graph)\b", text) else "train"
    lines = [
        line for line in text.splitlines()
        if line.strip() and not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    reason = without_values(re.split(r"\s*\[\[|\s*\[Op:|\s+Label values:", lines[-1] if lines else text)[0])
    reason = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", reason).strip()  # the graph function's name: noise
    name = getattr(loss, "name", None) or "loss"
    return spec.error(blamed_for_labels(spec, split), f"loss {name!r} does not fit the labels of data.{split}: {reason}")


def blamed_for_labels(spec, split: str) -> tuple:
    """Where labels that do not fit the loss are located: train.loss when they are train's
    (the loss or the model may be what is wrong), else the split that holds them, at the
    `--set` that changed it if one did (`pipe evaluate --set data.test.source...`)."""
    if split == "train":
        return ("train", "loss")
    changed = [path for path in getattr(spec, "overrides", {}) if tuple(path[:2]) == ("data", split)]
    return tuple(changed[-1]) if changed else ("data", split)


def xla_error(spec, setup, error):
    """A located error when XLA could not compile a step (an op without an XLA kernel, a
    shape XLA cannot know when it compiles): the spec asked for jit_compile."""
    text = error.message or ""
    if not setup.jit_compile or not re.search(r"XLA_\w+_JIT|XLA compilation|tf2xla", text):
        return None
    op = re.search(r"No registered '(\w+)' OpKernel for (XLA_\w+_JIT)", text)
    reason = f"the op {op[1]} has no {op[2]} kernel" if op else "a shape it must know when it compiles is computed"
    return spec.error(("device", "jit_compile"),
                      f"XLA cannot compile this model's training step ({reason}): set jit_compile: false")
