"""Running a training step over a dataset with as little Python per epoch as possible.

A hand-written `tf.function` loop pays one graph call per step and nothing else. The
custom loop matches that: steps run inside one graph call per `steps_per_execution`
steps, the metrics are reset inside the first call of an epoch, and every call returns
the loss, the metrics and the model's scalar variables packed into one float64 vector,
so reading them at the end of an epoch is a single device-to-host transfer.

When the number of batches of an epoch is known (and no `steps_per_epoch` cuts it),
one iterator over `dataset.repeat()` serves every epoch: an epoch is exactly that many
batches, in the same order re-iterating the dataset gives (a shuffle stage reshuffles at
each repetition as at each new iterator), without building an iterator per epoch.

Every step also notes the first step of the epoch whose loss was not finite (a few scalar
ops in the graph), so a diverging run is stopped naming its step without reading losses
back step by step.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from runner.train.strategies import distribute

# `steps_per_execution: auto`: the whole epoch per graph call, up to this many steps, so a
# progress bar and per-batch callbacks still hear from the loop every so often.
AUTO_STEPS_CAP = 100
# The packed state's entry for the epoch's first non-finite step (-1: none).
BAD_STEP = "\0first non-finite step"


def check_steps_per_epoch(train, dataset) -> None:
    """`train.steps_per_epoch` must not ask for more batches than a finite train split has
    (`train`: the `TrainConfig`): Keras would end each epoch early, saying so only in a warning.

    Raises:
        SpecError: at train.steps_per_epoch, with the number of batches there are.
    """
    wanted, available = train.steps_per_epoch, int(dataset.cardinality())
    if isinstance(wanted, int) and available >= 0 and wanted > available:
        raise train.error("steps_per_epoch", f"data.train has {available} batches per epoch; {wanted} steps run "
                          "out of data (Keras ends the epoch there, with a warning): lower it, or add a repeat "
                          "stage", at_value=True)


def resolve_steps_per_execution(value, steps_per_epoch) -> int:
    """The number of steps per graph call: an integer, or `auto`: the epoch when it has at
    most AUTO_STEPS_CAP steps, else the largest divisor of its steps up to that cap (Keras's
    fit runs whole calls, so a call must not straddle the epoch's end)."""
    if value is None:
        return 1
    if value == "auto":
        steps = steps_per_epoch or 1
        return max(d for d in range(1, min(steps, AUTO_STEPS_CAP) + 1) if steps % d == 0)
    return max(1, int(value))


class StepRunner:
    """Runs `step(x, y)` (already strategy-aware) over a dataset, several steps per call.

    Args:
        strategy: the distribution strategy; the default strategy iterates the dataset as is.
        step: runs one training step on a (distributed) batch; traced into the runner's graph
            (a tf.function when it must stay apart, as an XLA-compiled step).
        reset: resets the loss tracker and metrics (traced into the first call of an epoch).
        state: returns `[(name, tensor), ...]`: loss, metrics and scalar variables.
        distribute: False when the dataset needs no distribution (the default strategy).
        single_worker: True unless several workers iterate in step (multi-worker).
    """

    def __init__(self, strategy, step, reset, state, *, distribute, single_worker=True):
        self.strategy = strategy
        self.step = step
        self.reset = reset
        self.state = state
        self.distribute = distribute
        self.single_worker = single_worker
        self.names: list[str] = []
        self._known = {}  # count -> a tf.function closed over the one iterator
        # Whether a call starts its epoch: a tensor argument, so one trace serves both.
        self._first = {True: tf.constant(True), False: tf.constant(False)}
        self._until_end = _function(self._run_until_end)
        self._pack_now = _function(self._pack)
        self._begin = _function(self._begin_epoch)
        self._one = _function(self._tracked_step)
        self._taken = tf.Variable(0, trainable=False, dtype=tf.int64)
        self._bad = tf.Variable(-1, trainable=False, dtype=tf.int64)
        self._count = tf.Variable(0, trainable=False, dtype=tf.int64)
        self._iterator = None
        self._source = None
        self._packed = None

    def epochs(self, dataset, steps_per_epoch, steps, one_iterator=True):
        """Prepare to iterate `dataset` epoch after epoch; `steps` its batches (None: unknown).

        `one_iterator`: False when each pass must start from a new iterator (the data reads
        the epoch when a pass starts; a repeated iterator may start the next pass early).
        """
        self._known = {}  # the functions of an earlier fit are closed over its iterator
        # One iterator for all epochs: only when every epoch is the whole dataset, and not
        # across workers (their iterators agree on the end of the data, not on a count).
        self.repeats = one_iterator and steps_per_epoch is None and steps is not None and self.single_worker
        if self.repeats:
            self._iterator = iter(self._distributed(dataset.repeat()))
        else:
            self._source = self._distributed(dataset)

    def _distributed(self, dataset):
        return distribute(self.strategy, dataset) if self.distribute else dataset

    def begin_epoch(self):
        """A fresh iterator for the epoch, unless one iterator serves every epoch."""
        if not self.repeats:
            self._iterator = iter(self._source)

    def run(self, count: int, first: bool) -> int:
        """Up to `count` steps in one graph call; returns the steps taken."""
        if self.repeats:
            key = count
            if key not in self._known:
                # Closed over the iterator and the Python values: the one argument is
                # whether the call starts its epoch (an iterator argument would cost more
                # than the step itself on small steps).
                iterator = self._iterator
                traced = _function(lambda first: self._run_known(iterator, count, first))
                # Called as its concrete function: no signature matching per call (which
                # costs a small step's time).
                self._known[key] = traced.get_concrete_function(tf.TensorSpec([], tf.bool))
            self._packed = self._known[key](self._first[first])
            return count
        if first:
            self._begin()
        self._packed = None
        if count == 1 or not self.single_worker:
            # Workers agree on the end of their data one batch at a time.
            try:
                batch = next(self._iterator)
            except StopIteration:
                return 0
            self._one(*batch)
            return 1
        self._taken.assign(0)
        self._packed = self._until_end(self._iterator, count)
        return int(self._taken.numpy())

    def read(self) -> dict:
        """The state after the last call as `{name: float}`: one transfer from the device."""
        packed = self._packed if self._packed is not None else self._pack_now()
        values = np.asarray(packed)
        return {name: float(v) for name, v in zip(self.names, values)}

    def _pack(self):
        named = self.state() + [(BAD_STEP, self._bad)]
        self.names = [name for name, _ in named]  # Python strings, fixed at trace time
        return tf.stack([tf.cast(tf.reshape(t, []), tf.float64) for _, t in named])

    def _begin_epoch(self):
        self.reset()
        self._bad.assign(-1)
        self._count.assign(0)

    def _begin_epoch_graph(self):
        self._begin_epoch()  # stateful: a function runs it, though nothing reads an output
        return tf.constant(True)

    def _tracked_step(self, x, y):
        """The step, then: was its loss finite on every replica? (else note the step)."""
        loss = self.step(x, y)
        losses = [tf.cast(v, tf.float32) for v in self.strategy.experimental_local_results(loss)]
        finite = tf.reduce_all(tf.math.is_finite(tf.stack(losses)))
        self._bad.assign(tf.where(finite | (self._bad >= 0), self._bad, self._count))
        self._count.assign_add(1)

    def _run_known(self, iterator, count, first):
        tf.cond(first, self._begin_epoch_graph, lambda: tf.constant(False))
        if count == 1:
            self._tracked_step(*next(iterator))
        elif count > 1:
            _repeat(count, lambda: self._tracked_step(*next(iterator)))
        return self._pack()

    def _run_until_end(self, iterator, count):
        """Up to `count` steps, stopping where the data ends. The step runs only on a batch
        that exists (a step cut by OutOfRange could still have counted an optimizer iteration)."""
        def body(i, more):
            batch = iterator.get_next_as_optional()

            def step():
                self._tracked_step(*batch.get_value())
                self._taken.assign_add(1)
                return tf.constant(True)

            return i + 1, tf.cond(batch.has_value(), step, lambda: tf.constant(False))

        tf.while_loop(lambda i, more: tf.logical_and(i < count, more), body,
                      [tf.constant(0), tf.constant(True)], parallel_iterations=1)
        return self._pack()


def _function(fn):
    # Keras traces its steps without AutoGraph too: nothing here branches on a tensor,
    # and converting Keras's code would cost seconds of tracing.
    return tf.function(fn, autograph=False)


def _repeat(count, fn) -> None:
    """`fn()` `count` times inside the graph (a while loop, not `count` copies)."""
    def body(i):
        with tf.control_dependencies([i]):
            fn()
        return i + 1

    tf.while_loop(lambda i: i < count, body, [tf.constant(0)])
