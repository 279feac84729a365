"""`pipe run --profile`: a TensorBoard profile of a few training steps, and a verdict.

The profile (tf.profiler) goes to `<run>/tensorboard/plugins/profile/`, where TensorBoard's
Profile tab (`pip install tensorboard-plugin-profile`) shows the trace viewer, the op
statistics and its own input-pipeline analysis.

The one-line verdict does not need the plugin. It follows the tf.data guide's test for an
input bottleneck: compare how long the input pipeline alone takes per batch with how long
a whole training step takes (measured on the same steps as the profile). When the
pipeline alone needs at least `INPUT_BOUND_SHARE` of the step's time, the steps wait for
their data: input-bound; otherwise the model's computation sets the pace: compute-bound.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf

# The pipeline's share of a step above which the step is said to wait for its input:
# prefetching overlaps the two, so a pipeline this slow leaves the step little slack.
INPUT_BOUND_SHARE = 0.5


class StepProfiler(keras.callbacks.Callback):
    """Times `count` training steps after the first `skip` (which trace and warm up), then
    profiles the next `count` steps (or as many as training has left).

    The timed steps run without the profiler, whose tracing would slow them. Steps are
    counted across epochs, so one-batch epochs count too. With several steps per graph
    call, a call's time is shared among its steps.
    """

    def __init__(self, logdir, skip: int = 2, count: int = 5):
        super().__init__()
        self.logdir = str(logdir)
        self.skip = skip
        self.count = count
        self.step_seconds: list[float] = []
        self.profiled_steps = 0
        self._seen = 0
        self._active = False
        self._profiled = False
        self._last = None

    def on_train_batch_begin(self, batch, logs=None):
        # Once the timing is done (a graph call of several steps may have done it at once).
        if not self._active and not self._profiled and len(self.step_seconds) >= self.count:
            tf.profiler.experimental.start(self.logdir)
            self._active = self._profiled = True
        self._last = (batch, time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
        began_batch, began = self._last
        seconds = time.perf_counter() - began
        steps = max(1, batch - began_batch + 1)
        if self._active:
            self.profiled_steps += steps
            if self.profiled_steps >= self.count:
                self._stop()
        elif self.skip <= self._seen and len(self.step_seconds) < self.count:
            self.step_seconds += [seconds / steps] * steps
        self._seen += steps

    def on_train_end(self, logs=None):
        self._stop()

    def _stop(self):
        if self._active:
            tf.profiler.experimental.stop()
            self._active = False


def input_seconds_per_batch(dataset, batches: int = 20) -> float:
    """The input pipeline alone: seconds per batch, pulled inside one graph op as training
    pulls them (no Python per batch), its start-up (e.g. a shuffle buffer filling) left out:
    the time of 1 + `batches` batches less the time of 1, over `batches`."""
    repeated = dataset.repeat()
    pull = tf.function(lambda count: repeated.take(count).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1),
                       autograph=False)

    def seconds(count):
        start = time.perf_counter()
        pull(tf.constant(count, tf.int64)).numpy()
        return time.perf_counter() - start

    seconds(1)  # the first call traces `pull`
    return max(seconds(1 + batches) - seconds(1), 0.0) / batches


def verdict(step_seconds: list[float], input_seconds: float) -> dict:
    """The verdict and its figures: median step time, input time per batch, their ratio."""
    if not step_seconds:
        return {"verdict": "no steps profiled (training had too few steps)"}
    ordered = sorted(step_seconds)
    step = ordered[len(ordered) // 2]
    share = input_seconds / step if step > 0 else 0.0
    bound = "input-bound" if share >= INPUT_BOUND_SHARE else "compute-bound"
    return {
        "verdict": bound,
        "step_ms": step * 1e3,
        "input_ms_per_batch": input_seconds * 1e3,
        "input_share": share,
        "line": (f"profile: {bound}: a training step takes {step * 1e3:.2f} ms, the input pipeline "
                 f"alone {input_seconds * 1e3:.2f} ms per batch ({share:.0%} of the step; "
                 f"input-bound from {INPUT_BOUND_SHARE:.0%})"),
    }
