"""The custom loop: a GradientTape step under tf.function for tf.Module and Keras models.

Its history has the structure `fit` returns: `{"loss": [...], "<metric>": [...],
"val_loss": [...], "val_<metric>": [...]}`, one value per epoch.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from runner.models.identifiers import resolve_loss, resolve_metric
from runner.models.modules import scalar_variables
from runner.train.divergence import check_finite
from runner.train.epoch_end import EpochLogs
from runner.train.engine import needs_batch_hooks
from runner.train.execution import BAD_STEP, StepRunner, resolve_steps_per_execution
from runner.train.loss_check import example_batch
from runner.train.result import TrainResult, finalize_weights
from runner.train.strategies import distribute


class CustomLoop:
    """A GradientTape training step compiled with tf.function, strategy-aware.

    Build it inside `strategy.scope()`: the loss tracker and metrics it creates are
    distributed variables there. Per-example losses are averaged over the global batch
    and gradients summed over replicas (by the optimizer), so N replicas train like one.
    With the default strategy the distribution calls are identities.

    Args:
        model: a Keras model or a tf.Module (its trainable_variables are trained).
        loss, optimizer, metrics: resolved by `runner.identifiers` (metrics as for compile).
        element_spec: the training dataset's, to build the model and pick metrics.
        setup: the `DeviceSetup` (strategy, replicas, jit_compile, mixed_precision).
        class_weight: `{label: weight}` applied to each training example's loss (held-out
            losses stay unweighted, as under `fit`).
        callbacks: Keras callbacks, driven for Keras models like `fit` does.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        report: `{initial: template, epoch: template}` lines printed with str.format.
        spec: to locate report template mistakes.
        steps_per_execution: steps per graph call, an integer or `auto` (see execution.py).
    """

    def __init__(self, model, *, loss, optimizer, metrics, element_spec, setup,
                 class_weight=None, callbacks=(), verbose=1, report=None, spec=None,
                 steps_per_execution=1):
        self.model = model
        self.is_keras = isinstance(model, keras.Model)
        self.strategy = setup.strategy
        self.replicas = setup.num_replicas
        if setup.mixed_precision == "mixed_float16" and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer
        ):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self.optimizer = optimizer
        self.scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        x, y = example_batch(element_spec, model)
        prediction = model(x)  # builds Keras models; creates nothing for tf.Modules
        self.loss = resolve_loss(loss, y, prediction)
        self.metrics = [resolve_metric(m, y, prediction) for m in metrics or []]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.variables = list(model.trainable_variables)
        self.optimizer.build(self.variables)
        self.class_weight = _class_weight_table(class_weight)
        self.callbacks = list(callbacks)
        self._batch_hooks = any(needs_batch_hooks(c) for c in self.callbacks)
        self.verbose = verbose
        self.report = report or {}
        self.spec = spec
        self.scalars = scalar_variables(model)
        jit = bool(setup.jit_compile)
        # strategy.run inside the compiled function, as tf.distribute documents: one graph
        # call per step for all replicas, instead of an eager dispatch per replica.
        # No AutoGraph, as Keras traces its own steps: nothing here branches on a tensor.
        self._train = tf.function(lambda x, y: self.strategy.run(self._train_step, args=(x, y)),
                                  jit_compile=jit, autograph=False)
        self._test = tf.function(lambda x, y: self.strategy.run(self._test_step, args=(x, y)),
                                 jit_compile=jit, autograph=False)
        self.steps_per_execution = steps_per_execution
        # The default strategy needs no distributed dataset: iterate the dataset itself.
        self.distribute = setup.strategy_name != "default" or isinstance(self.strategy, tf.distribute.OneDeviceStrategy)
        # Inside the runner's graph the step is traced in place (one graph, and no function
        # call per iteration of its loop); XLA needs the step as its own compiled function.
        step = self._train if jit else (lambda x, y: self.strategy.run(self._train_step, args=(x, y)))
        self.runner = StepRunner(self.strategy, step, self._reset, self._state,
                                 distribute=self.distribute, single_worker=setup.cluster is None)
        self._distributed = {}  # held-out datasets, distributed once for every epoch's evaluation

    # The steps run once per replica (strategy.run); averages use the global batch.

    def _per_example(self, y, prediction, weighted=False):
        """Each example's loss; class-weighted only when `weighted` (training: Keras's fit
        weighs the training loss by class, never a held-out split's)."""
        dtype = self.loss.dtype
        y = tf.nest.map_structure(lambda t: tf.cast(t, dtype), y)
        prediction = tf.nest.map_structure(lambda t: tf.cast(t, dtype), prediction)
        with tf.name_scope("loss"):  # names a failing op as the loss's (see run._loss_error)
            values = self.loss.call(y, prediction)
        rank = values.shape.rank
        if rank is not None and rank > 1:  # e.g. per-pixel losses: one value per example
            values = tf.reduce_mean(values, axis=list(range(1, rank)))
        if weighted and self.class_weight is not None:
            values = values * _sample_weights(self.class_weight, y)
        return values

    def _global_count(self, values):
        count = tf.cast(tf.shape(values)[0], values.dtype)
        if self.replicas == 1:
            return count
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)

    def _forward(self, x, training):
        if self.is_keras:
            return self.model(x, training=training)
        return self.model(x)

    def _regularization(self, dtype):
        if self.is_keras and self.model.losses:
            return tf.cast(tf.add_n(self.model.losses), dtype) / self.replicas
        return tf.constant(0.0, dtype)

    def _train_step(self, x, y):
        with tf.GradientTape() as tape:
            prediction = self._forward(x, training=True)
            values = self._per_example(y, prediction, weighted=True)
            count = tf.cast(tf.shape(values)[0], values.dtype)
            # The mean over the GLOBAL batch (tf.nn.compute_average_loss with the true
            # global size, which also holds for a smaller last batch).
            loss = tf.reduce_sum(values) / self._global_count(values)
            regularization = self._regularization(loss.dtype)  # before the update, as fit reports it
            loss += regularization
            scaled = self.optimizer.scale_loss(loss) if self.scales_loss else loss
        gradients = tape.gradient(scaled, self.variables)
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        self._track(y, prediction, values, count, regularization)
        return loss

    def _test_step(self, x, y):
        prediction = self._forward(x, training=False)
        values = self._per_example(y, prediction)
        self._track(y, prediction, values, tf.cast(tf.shape(values)[0], values.dtype))
        return prediction

    def _track(self, y, prediction, values, count, regularization=None):
        local_mean = tf.reduce_sum(values) / tf.maximum(count, 1.0)
        if regularization is None:
            regularization = self._regularization(values.dtype)
        regularization = regularization * self.replicas
        self.loss_tracker.update_state(local_mean + regularization, sample_weight=count)
        for metric in self.metrics:
            metric.update_state(y, prediction)

    def _reset(self):
        self.loss_tracker.reset_state()
        for metric in self.metrics:
            metric.reset_state()

    def _log_tensors(self, prefix="") -> dict:
        """Loss and metrics by log name, as tensors (in a graph, or read by `_logs`)."""
        logs = {prefix + "loss": self.loss_tracker.result()}
        for metric in self.metrics:
            result = metric.result()
            if isinstance(result, dict):
                logs.update({prefix + k: v for k, v in result.items()})
            else:
                logs[prefix + metric.name] = result
        return logs

    def _logs(self, prefix="") -> dict:
        return {k: float(v) for k, v in self._log_tensors(prefix).items()}

    def _state(self) -> list:
        """Loss, metrics and scalar variables as (name, tensor) pairs, read in one transfer."""
        return [*self._log_tensors().items(), *((_SCALAR + name, v) for name, v in self.scalars.items())]

    @property
    def can_collect(self) -> bool:
        """Whether `evaluate` can return predictions too (one device: no per-replica parts)."""
        return not self.distribute

    def evaluate(self, dataset, prefix="", collect=False):
        """Loss and metrics over a dataset, with the model in inference mode.

        With `collect`, also the labels and predictions of that pass as numpy arrays
        (`(metrics, (labels, predictions))`), so plots need no second pass.
        """
        self._reset()
        if collect:
            return self._evaluate_collecting(dataset, prefix)
        if not self.distribute:
            distributed = dataset
        elif id(dataset) in self._distributed:
            distributed = self._distributed[id(dataset)][1]
        else:
            distributed = distribute(self.strategy, dataset)
            self._distributed[id(dataset)] = (dataset, distributed)  # the dataset kept: its id stays its own
        for x, y in distributed:
            self._test(x, y)
        return self._logs(prefix)

    def _evaluate_collecting(self, dataset, prefix):
        labels, predictions = [], []
        for x, y in dataset:
            prediction = self._test(x, y)
            if isinstance(prediction, tf.Tensor) and isinstance(y, tf.Tensor):  # one output
                labels.append(np.asarray(y))
                predictions.append(np.asarray(tf.cast(prediction, tf.float32)))
        collected = (np.concatenate(labels), np.concatenate(predictions)) if labels else None
        return self._logs(prefix), collected

    def scalar_values(self) -> dict:
        """Current value of every scalar variable by short name."""
        return {name: float(v.numpy()) for name, v in self.scalars.items()}

    def check_report(self, metric_names) -> None:
        """Format each report template once with placeholder values, before training.

        Raises:
            SpecError: at train.report.<which> for an unknown field or a bad format.
        """
        for which, template in self.report.items():
            if template is None:
                continue
            fields = {"loss": 0.0, **{n: 0.0 for n in self.scalars}}
            fields.update({n: 0.0 for n in metric_names})
            if which == "epoch":
                fields["epoch"] = 0
            try:
                template.format(**fields)
            except KeyError as e:
                known = ", ".join(fields)
                raise self.spec.error(
                    ("train", "report", which),
                    f"unknown field {e.args[0]!r} in the report template (fields: {known})",
                ) from e
            except (ValueError, IndexError) as e:
                raise self.spec.error(("train", "report", which), f"bad report template: {e}") from e

    def fit(self, train, *, validation=None, epochs, steps_per_epoch=None, initial_epoch=0, quiet=False,
            epoch_begin=None, epoch_end=None, validation_freq=1, one_iterator=True) -> TrainResult:
        """Train for `epochs`, validating after each; drives Keras callbacks.

        `epoch_begin(epoch)` runs before each epoch (it sets the data's epoch, which seeds
        reshuffling); `epoch_end(epoch, logs, scalars)` after it (the run's tables,
        checkpoint and heartbeat). A NaN or infinite loss raises `TrainingDiverged` first.
        `one_iterator`: whether one iterator over `train.repeat()` may serve every epoch
        (not when the data reads the epoch when a pass starts, as epoch-seeded shuffles do).
        """
        history: dict = {}
        trajectories = {name: [value] for name, value in self.scalar_values().items()}
        steps = steps_per_epoch or _cardinality(train)
        self.runner.epochs(train, steps_per_epoch, _cardinality(train), one_iterator=one_iterator)
        chunk = resolve_steps_per_execution(self.steps_per_execution, steps)
        self._check_report_fields(validation is not None)
        recorder = EpochLogs()  # last: the logs as the callbacks left them
        callbacks = self._callback_list(epochs, steps, recorder)
        if self.report.get("initial") and not quiet:
            print(self.report["initial"].format(**self.evaluate(train), **self.scalar_values()), flush=True)
        callbacks.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            if epoch_begin is not None:
                epoch_begin(epoch)
            bar = self._progress_bar(epoch, epochs, steps, quiet)
            if self.callbacks:  # (an empty list still converts the logs: skipped on small epochs)
                callbacks.on_epoch_begin(epoch)
            step, state = self._train_epoch(steps, chunk, callbacks, bar)
            bad = state.pop(BAD_STEP)
            check_finite(state["loss"], epoch, int(bad) if bad >= 0 else None, diverged=bad >= 0)
            logs = {k: v for k, v in state.items() if not k.startswith(_SCALAR)}
            scalars = {k[len(_SCALAR):]: v for k, v in state.items() if k.startswith(_SCALAR)}
            if validation is not None and (epoch + 1) % validation_freq == 0:
                logs.update(self.evaluate(validation, prefix="val_"))
            if self.callbacks:
                callbacks.on_epoch_end(epoch, logs)
                logs = {**logs, **recorder.logs.pop(epoch, {})}  # with what callbacks added (learning_rate)
            self._report_epoch(epoch, step, logs, bar, quiet, scalars)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            for name, value in scalars.items():
                trajectories[name].append(value)
            if epoch_end is not None:
                epoch_end(epoch, logs, scalars)
            if self.is_keras and getattr(self.model, "stop_training", False):
                break
        finalize_weights(self.optimizer, self.variables, epochs)
        callbacks.on_train_end(history and {k: v[-1] for k, v in history.items()})
        return TrainResult(history=history, trajectories=trajectories, epochs_run=len(history.get("loss", [])))

    def _train_epoch(self, steps, chunk, callbacks, bar):
        """One pass over the training data (or `steps_per_epoch` steps).

        Returns the steps taken and the state at the end ({loss, metrics, scalar variables,
        the first non-finite step}). Python runs once per `steps_per_execution` steps, and
        per-batch hooks only when a callback or the progress bar listens; `chunk`: steps per call.
        """
        self.runner.begin_epoch()
        hooks = self._batch_hooks
        step = 0
        while steps is None or step < steps:
            count = chunk if steps is None else min(chunk, steps - step)
            if hooks:
                callbacks.on_train_batch_begin(step)
            taken = self.runner.run(count, first=step == 0)
            step += taken
            if bar is not None and self.verbose == 1 and 0 < step != steps:  # the last: at epoch end
                bar.update(step, [("loss", self.runner.read()["loss"])])
            if hooks and taken:
                callbacks.on_train_batch_end(step - 1)
            if taken < count:
                break
        if step == 0:  # no batch at all: the reset state
            self.runner.run(0, first=True)
        return step, self.runner.read()

    def _progress_bar(self, epoch, epochs, steps, quiet):
        """Keras's progress bar, or None when nothing is shown (no bar work at all)."""
        if quiet or self.verbose not in (1, 2):
            return None
        print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        return keras.utils.Progbar(steps, verbose=self.verbose, stateful_metrics=["loss"])

    def _report_epoch(self, epoch, step, logs, bar, quiet, scalars) -> None:
        """The progress bar's last update and the spec's epoch report line."""
        if quiet:
            return
        if bar is not None:
            if bar.target is None:  # unknown length (after filter): known now, as Keras's fit does
                bar.target = step
            bar.update(step, list(logs.items()), finalize=True)
        if self.report.get("epoch"):
            # Epochs are numbered from 1 wherever a user reads them (as Keras prints them).
            print(self.report["epoch"].format(epoch=epoch + 1, **logs, **scalars), flush=True)

    def _check_report_fields(self, validated: bool) -> None:
        if not self.report:
            return
        names = [m.name for m in self.metrics]
        validation_names = ["val_" + n for n in ["loss", *names]] if validated else []
        self.check_report([*names, *validation_names])

    def _callback_list(self, epochs, steps, recorder=None):
        callbacks = [*self.callbacks, *([recorder] if recorder is not None else [])]
        if not self.is_keras:  # only the runner's own callbacks (a profiler), which need no model
            return keras.callbacks.CallbackList(callbacks, add_history=False, add_progbar=False)
        self.model.stop_training = False
        say_which_way_metrics_improve(self.callbacks, self.metrics)
        return keras.callbacks.CallbackList(
            callbacks, add_history=False, add_progbar=False, model=self.model,
            epochs=epochs, steps=steps, verbose=0,
        )


def say_which_way_metrics_improve(callbacks, metrics) -> None:
    """Set `mode` on callbacks that watch one of `metrics` in mode 'auto'.

    Keras's EarlyStopping, ModelCheckpoint and ReduceLROnPlateau look for a watched
    metric's direction among the metrics given to `compile`; these loops keep their metrics
    themselves, so without this a watched `val_accuracy` is an error where fit trains.
    fit itself cannot find a metric of one output by the name it logs (`val_cls_accuracy`).
    """
    directions = {getattr(m, "name", None): getattr(getattr(m, "metric", m), "_direction", None) for m in metrics}
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        if getattr(callback, "mode", None) != "auto" or not isinstance(monitor, str):
            continue
        direction = directions.get(monitor.removeprefix("val_"))
        if direction in ("up", "down"):
            callback.mode = "max" if direction == "up" else "min"


_SCALAR = "\0scalar:"  # prefixes scalar variables in the packed state, apart from metric names


def _cardinality(dataset):
    count = int(dataset.cardinality())
    return count if count >= 0 else None


def _class_weight_table(class_weight):
    if not class_weight:
        return None
    size = max(int(k) for k in class_weight) + 1
    table = [1.0] * size
    for label, weight in class_weight.items():
        table[int(label)] = float(weight)
    return tf.constant(table)


def _sample_weights(table, y):
    """The class weight of each example: integer labels, or one-hot labels by argmax."""
    labels = tf.nest.flatten(y)[0]
    if labels.shape.rank is not None and labels.shape.rank > 1 and labels.shape[-1] not in (None, 1):
        labels = tf.argmax(labels, axis=-1)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    return tf.gather(table, labels)
