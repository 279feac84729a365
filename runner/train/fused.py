"""The fused engine: a split held as tensors, and one or more whole epochs per graph call.

Keras `fit` and the tf.data custom loop pay a Python dispatch (and an iterator fetch) for
every batch; for a small model that dispatch is most of an epoch. Here an epoch is one
`tf.function`: the order of the examples is a stateless permutation seeded by
(seed, epoch), a `tf.while_loop` gathers each batch from the tensors and runs the same
training step as the custom loop (`CustomLoop._train_step`: class weights, regularisation
losses, `training=True`, loss scaling, the optimizer's own clipping and learning-rate
schedule), and loss and metrics accumulate in their variables. When nothing needs Python
between epochs (no callbacks), several epochs run in one call, their logs gathered in
TensorArrays.

Because the order depends only on (seed, epoch), a run resumed at epoch k takes exactly
the batches the uninterrupted run took from epoch k on.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from runner.train.custom import CustomLoop
from runner.train.epoch_end import EpochLogs
from runner.train.result import TrainResult, finalize_weights

# Grow the epochs per call until a call takes about this long: a checkpoint, report lines
# and progress come at least this often, and the per-call cost is spread over many epochs.
SECONDS_PER_CALL = 1.0


@dataclass
class InMemoryData:
    """A split as tensors, batched (and shuffled) as its stages say.

    `batch_map`, when given, turns each gathered batch of (x, y) into the batch the step
    takes (the split's map ops, when the split is held as its source gives it), and
    `element_spec` is then the spec of one of those mapped examples.
    """

    x: Any
    y: Any
    batch_size: int
    drop_remainder: bool = False
    shuffle: bool = False
    seed: int = 0
    reshuffle_each_iteration: bool = True
    batch_map: Any = None
    element_spec: Any = None
    augment: Any = None  # training batches: `runner.data.batch_augment.BatchAugment`, seeded by the step

    def batch_signature(self, augmented=False):
        """The specs of (x, y) of a batch as the step takes it, for any batch size (as the
        training step takes it, after the augmentation, when `augmented`)."""
        if augmented and self.augment is not None:
            return self.augment.output_signature
        if self.batch_map is None:
            return tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), (self.x, self.y))
        return tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape], s.dtype), self.element_spec)

    def batch(self, x, y, ids, draw=None):
        """The examples `ids` of (x, y) (this split's tensors, or a replica's), as the step takes
        them; augmented with the draws of `draw` (epoch, step) when given and augmenting."""
        take = lambda t: tf.gather(t, ids)  # noqa: E731
        batch = tf.nest.map_structure(take, x), tf.nest.map_structure(take, y)
        batch = batch if self.batch_map is None else self.batch_map(batch)
        return batch if draw is None or self.augment is None else self.augment(batch, self.seed, *draw)

    @property
    def count(self) -> int:
        return int(tf.nest.flatten(self.x)[0].shape[0])

    @property
    def steps(self) -> int:
        """Batches per epoch: the last partial one too, unless drop_remainder."""
        full, rest = divmod(self.count, self.batch_size)
        return full + (1 if rest and not self.drop_remainder else 0)


def epoch_order(data: InMemoryData, epoch):
    """The order of the examples in `epoch`: a permutation from (seed, epoch) alone."""
    indices = tf.range(data.count)
    if not data.shuffle:
        return indices
    epoch = tf.cast(epoch, tf.int64) if data.reshuffle_each_iteration else tf.constant(0, tf.int64)
    seed = tf.stack([tf.constant(data.seed, tf.int64), epoch])
    return tf.random.experimental.stateless_shuffle(indices, seed=seed)


def _batches_loop(step, x, y, batches, count, epoch):
    """`step(x, y, ids, (epoch, i))` for the first `count` rows of `batches`, in order.

    `count` is a tensor, not the static row count: a compiled loop can then be called
    for no batches at all, which compiles it and changes nothing (`FusedLoop._compile_ahead`).
    """
    def body(i):
        step(x, y, batches[i], (epoch, i))
        return i + 1

    # parallel_iterations=1: each step sees the variables the previous one updated.
    tf.while_loop(lambda i: i < count, body, [tf.constant(0)], parallel_iterations=1)


class FusedLoop(CustomLoop):
    """The custom loop's step, run for whole epochs inside one graph call.

    Build it inside `strategy.scope()`. Under `mirrored`, every step's global batch is
    split evenly over the replicas inside the graph (as tf.data's distribution splits it),
    the loss is averaged over the global batch and gradients summed over replicas.

    Args:
        train_data: the training split as `InMemoryData`.
        validation_data: the validation split as `InMemoryData`, or None.
        forward: what the steps call instead of `model` (a Keras model sharing its layers),
            when the splits hold what `model` computes first (`runner.models.string_front`);
            every split it sees, in memory or not, holds that.
        Others: as for `CustomLoop`.
    """

    def __init__(self, model, *, train_data: InMemoryData, validation_data: InMemoryData | None = None,
                 forward=None, **kwargs):
        super().__init__(model, **kwargs)
        self.forward = forward
        self.train_data = train_data
        self.validation_data = validation_data
        # Under jit_compile XLA compiles each training step (one device): on a CPU it fuses a
        # small model's many element-wise ops, but may run convolutions and random ops slower
        # (see docs/guides/training.md, The fused engine).
        self.xla_steps = bool(kwargs["setup"].jit_compile) and self.replicas == 1
        self.xla_loop = self.xla_steps  # the epoch's loop compiled, else each step (`_compile_ahead`)
        self._log_keys = self._log_names()
        if validation_data is not None:
            self._log_keys += ["val_" + k for k in self._log_keys]
        self._scalar_keys = list(self.scalars)
        # Callbacks may act between epochs; checkpoints saved every epoch need each epoch's state.
        self.one_epoch_per_call = bool(self.callbacks)
        self._recorder = EpochLogs()  # last: sees what callbacks added (learning_rate, ...)
        self.callbacks.append(self._recorder)
        # autograph=False: the loops are explicit tf.while_loops; tracing is shorter without it.
        self._run_epochs = tf.function(self._epochs_graph, autograph=False)
        self._evaluators: dict = {}
        self._traced_steps: dict = {}

    def _log_names(self) -> list:
        """The keys of `_logs()`, before any batch: a metric that builds on its first update
        (R2Score) has no result until then, and logs under its name."""
        names = ["loss"]
        for metric in self.metrics:
            try:
                result = metric.result()
            except AttributeError:  # not built yet
                result = None
            names.extend(result if isinstance(result, dict) else [metric.name])
        return names

    # In the graph.

    def _forward(self, x, training):
        if self.forward is None:
            return super()._forward(x, training)
        return self.forward(x, training=training)

    def _epochs_graph(self, x, y, vx, vy, first, count):
        """`count` epochs from `first`: each epoch's logs and scalar variables, stacked."""
        keys = self._log_keys + self._scalar_keys
        arrays = [tf.TensorArray(tf.float32, size=count) for _ in keys]

        def body(i, arrays):
            logs = self._train_epoch_graph(x, y, first + tf.cast(i, tf.int64))
            if vx is not None:
                logs.update(self._evaluate_graph(vx, vy, self.validation_data, "val_"))
            logs.update({name: tf.identity(v) for name, v in self.scalars.items()})
            return i + 1, [a.write(i, tf.cast(logs[k], tf.float32)) for a, k in zip(arrays, keys)]

        _, arrays = tf.while_loop(lambda i, _: i < count, body, [tf.constant(0, count.dtype), arrays],
                                  parallel_iterations=1)
        return {k: a.stack() for k, a in zip(keys, arrays)}

    def _train_epoch_graph(self, x, y, epoch):
        self._reset()
        self._pass("train", x, y, epoch_order(self.train_data, epoch), self.train_data, epoch)
        return self._log_tensors()

    def _evaluate_graph(self, x, y, data: InMemoryData, prefix=""):
        self._reset()
        self._pass("test", x, y, tf.range(data.count), data, tf.constant(0, tf.int64))
        return self._log_tensors(prefix)

    def _pass(self, kind, x, y, order, data: InMemoryData, epoch):
        """Every batch of `order`: the full ones in one loop, then the partial one, if kept
        (two parts, so that every batch in the loop has the same static shape)."""
        step, full_batches = self._steps(kind, data)
        full = data.count // data.batch_size
        if full:
            batches = tf.reshape(order[: full * data.batch_size], [full, data.batch_size])
            full_batches(x, y, batches, tf.constant(full), epoch)
        if data.count % data.batch_size and not data.drop_remainder:
            step(x, y, order[full * data.batch_size:], (epoch, tf.constant(full)))

    def _steps(self, kind, data: InMemoryData):
        """The step of `kind` on the examples `ids` of (x, y), for any batch, and the loop
        that runs it over full batches (`batches`: one row of example ids per batch);
        each batch is gathered and mapped as `data` says (`InMemoryData.batch`).

        On one device the step is traced once, for batches of any size (tracing a model
        is most of a fused run's fixed cost), and both run that graph. Under jit_compile
        XLA compiles the training loop over the full batches, each batch's gather and step
        (one compiled call per epoch: a call per step would cost the host more than a
        small model's step), traced for their static shape: XLA must know every shape when
        it compiles (an LSTM's gradient loop computes them otherwise). The partial batch
        and evaluation run uncompiled: XLA compiles once per shape, and they run too
        seldom to repay a compilation. Replicas trace the step in place, in their replica
        context.
        """
        python_step = self._train_step if kind == "train" else self._test_step
        if self.replicas > 1:
            def replicated(x, y, ids, draw):
                return self.strategy.run(self._replica_step, args=(python_step, data, x, y, ids))
            return replicated, functools.partial(_batches_loop, replicated)
        signature = data.batch_signature(augmented=kind == "train")
        key = (kind, str(signature), data.batch_map, data.augment if kind == "train" else None)
        if key not in self._traced_steps:
            # Traced on first use: under XLA, only a partial batch needs it.
            traced = functools.cache(
                lambda: tf.function(python_step, autograph=False).get_concrete_function(*signature))

            def step(x, y, ids, draw):
                return traced()(*data.batch(x, y, ids, draw if kind == "train" else None))

            full_batches = functools.partial(_batches_loop, step)
            if self.xla_steps and kind == "train":
                gathered_step = lambda x, y, ids, draw: python_step(*data.batch(x, y, ids, draw))  # noqa: E731
                if self.xla_loop:
                    full_batches = tf.function(functools.partial(_batches_loop, gathered_step),
                                               jit_compile=True, autograph=False)
                else:
                    full_batches = functools.partial(
                        _batches_loop, tf.function(gathered_step, jit_compile=True, autograph=False))
            self._traced_steps[key] = step, full_batches
        return self._traced_steps[key]

    def _compile_ahead(self):
        """Trace the first call's graph while XLA compiles the training loop beside it.

        XLA compiles a function when it is first called. Here the loop is called for no
        batches in a thread, where it compiles (in C++, without Python's lock) while this
        thread traces the rest of the epoch; the epoch's call then finds it compiled. A
        call for no batches reads the variables and writes them back unchanged; it is
        waited for here, before any graph that changes them runs.

        Some models XLA compiles step by step, as fit does, but not inside a loop (a size
        it must know, such as CategoryEncoding's count, is computed there): then each step
        is compiled instead, when the first epoch runs.
        """
        data = self.train_data
        full = data.count // data.batch_size
        if not (full and self.xla_steps):
            return
        _, full_batches = self._steps("train", data)
        args = (data.x, data.y, tf.zeros([full, data.batch_size], tf.int32), tf.constant(0), tf.constant(0, tf.int64))
        # Called from a graph, as the epoch calls it: XLA's cache tells the two calls apart.
        loop = tf.function(lambda *args: full_batches(*args), autograph=False).get_concrete_function(*args)
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            compiling = thread.submit(_on_device, tf.nest.flatten(data.x)[0].device, loop, *args)
            self._run_epochs.get_concrete_function(*self._epochs_args(0, 1))
            try:
                compiling.result()
            except tf.errors.OpError:  # not as a loop: each step (an error there is the run's)
                self.xla_loop = False
                self._traced_steps.clear()
                self._run_epochs = tf.function(self._epochs_graph, autograph=False)

    def _replica_step(self, step, data, x, y, ids):
        """This replica's share of the global batch `ids` (shares differ by one at most)."""
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int32)
        size = tf.shape(ids)[0]
        low = size * replica // self.replicas
        high = size * (replica + 1) // self.replicas
        return step(*data.batch(x, y, ids[low:high]))

    # In Python.

    def evaluate_in_memory(self, data: InMemoryData, prefix="") -> dict:
        """Loss and metrics over an in-memory split, in inference mode, in one graph call."""
        evaluate = self._evaluators.get(id(data))
        if evaluate is None:
            evaluate = tf.function(lambda x, y: self._evaluate_graph(x, y, data, prefix), autograph=False)
            self._evaluators[id(data)] = evaluate
        return {k: float(v) for k, v in evaluate(data.x, data.y).items()}

    def fit(self, *, epochs, initial_epoch=0, quiet=False, epoch_end=None,
            group_end=None) -> TrainResult:
        """Train for `epochs`; validate after each; drive Keras callbacks after each.

        With callbacks, one epoch per call (they may stop training or change the learning
        rate); without, as many as fit in about `SECONDS_PER_CALL`. `epoch_end(epoch, logs,
        scalars)` runs after every epoch but the last of a call, `group_end` after that one:
        only then do the variables hold that epoch's state (what a checkpoint may save).
        """
        history: dict = {}
        trajectories = {name: [value] for name, value in self.scalar_values().items()}
        self._check_report_fields(self.validation_data is not None)
        callbacks = self._callback_list(epochs, self.train_data.steps)
        if self.report.get("initial") and not quiet:
            initial = self.evaluate_in_memory(self.train_data)
            print(self.report["initial"].format(**initial, **self.scalar_values()), flush=True)
        self._compile_ahead()
        callbacks.on_train_begin()
        epoch, per_call = initial_epoch, 1
        while epoch < epochs:
            count = 1 if self.one_epoch_per_call else min(per_call, epochs - epoch)
            callbacks.on_epoch_begin(epoch)
            started = time.monotonic()
            results = self._call_epochs(epoch, count)
            seconds = time.monotonic() - started
            per_call = _next_per_call(count, seconds)
            for i in range(count):
                logs = {k: results[k][i] for k in self._log_keys}
                callbacks.on_epoch_end(epoch + i, logs)
                logs = self._recorder.logs.pop(epoch + i, logs)
                scalars = {k: results[k][i] for k in self._scalar_keys}
                self._report_fused_epoch(epoch + i, epochs, logs, scalars, seconds / count, quiet)
                for key, value in logs.items():
                    history.setdefault(key, []).append(value)
                for name in self._scalar_keys:
                    trajectories[name].append(results[name][i])
                hook = group_end if i == count - 1 else epoch_end
                if hook is not None:
                    hook(epoch + i, logs, scalars)
            epoch += count
            if self.is_keras and getattr(self.model, "stop_training", False):
                break
        finalize_weights(self.optimizer, self.variables, epochs)
        callbacks.on_train_end(history and {k: v[-1] for k, v in history.items()})
        return TrainResult(history=history, trajectories=trajectories, epochs_run=len(history.get("loss", [])))

    def _epochs_args(self, first: int, count: int) -> tuple:
        validation = self.validation_data
        return (self.train_data.x, self.train_data.y,
                None if validation is None else validation.x, None if validation is None else validation.y,
                tf.constant(first, tf.int64), tf.constant(count, tf.int32))

    def _call_epochs(self, first: int, count: int) -> dict:
        results = self._run_epochs(*self._epochs_args(first, count))
        return {k: [float(v) for v in values.numpy()] for k, values in results.items()}

    def _report_fused_epoch(self, epoch, epochs, logs, scalars, seconds, quiet) -> None:
        """What the custom loop prints after an epoch: Keras's epoch line, the report line."""
        if quiet:
            return
        if self.verbose == 1:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        if self.verbose in (1, 2):
            steps = self.train_data.steps
            values = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
            print(f"{steps}/{steps} - {seconds:.2f}s - {values}", flush=True)
        if self.report.get("epoch"):
            print(self.report["epoch"].format(epoch=epoch + 1, **logs, **scalars), flush=True)


def _on_device(device, function, *args):
    """`function(*args)` placed on `device` (another thread starts on the default device)."""
    with tf.device(device):
        return function(*args)


def _next_per_call(count: int, seconds: float) -> int:
    """Epochs for the next call: towards SECONDS_PER_CALL, growing at most tenfold per call
    (the first call's time includes tracing, so its estimate is low)."""
    if seconds <= 0:
        return count * 10
    return max(1, min(count * 10, int(count * SECONDS_PER_CALL / seconds)))
