"""Which engine trains a run: the fused in-memory engine, or Keras/tf.data (`fit` or custom).

`train.engine: auto` fuses only when the fused engine takes the same steps the tf.data
path would; otherwise it falls back and says why. `fused` insists (a located error when
it cannot), `keras` never fuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from runner.spec.training_rules import fused_obstacle
from runner.train.checkpoint import saves_every_epoch

_FUSED_STRATEGIES = ("default", "one_device", "mirrored")
_BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")


@dataclass
class EngineChoice:
    """The engine that runs, and why (one line for the user and the manifest); the engines
    of `runner.run.engines` carry it."""

    name: str  # "fused" or "keras"
    reason: str

    @property
    def line(self) -> str:
        return f"engine: {self.name} ({self.reason})"


def choose_engine(spec, *, setup, loop: str, callbacks, data_reason: str, nbytes: int | None) -> EngineChoice:
    """Pick the engine for `train.engine` (default keras).

    Args:
        loop: the tf.data loop that runs when not fused (`fit` or `custom`).
        callbacks: the Keras callbacks the run would drive.
        data_reason: why the training split cannot be held in memory ("" when it can).
        nbytes: the training split's size in memory, when it can be held there.

    Raises:
        SpecError: at train.engine when `fused` is asked for and cannot run.
    """
    train = spec.sections.train
    requested = train.engine
    if requested == "keras":
        return EngineChoice("keras", f"{loop}; train.engine: keras")
    reason = _obstacle(train, setup, callbacks, data_reason, nbytes)
    if reason is None:
        size = f"{nbytes / 2**20:.0f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KB"
        calls = ("one graph call per epoch (callbacks act between epochs)" if callbacks
                 else "one graph call per epoch (each epoch checkpointed)"
                 if saves_every_epoch(spec.sections.outputs.checkpoints)
                 else "whole epochs per graph call")
        return EngineChoice("fused", f"data in memory, {size}; {calls}")
    if requested == "fused":
        raise spec.error(("train", "engine"), f"the fused engine cannot run this spec: {reason}")
    return EngineChoice("keras", f"{loop}; not fused: {reason}")


def _obstacle(train, setup, callbacks, data_reason, nbytes) -> str | None:
    """Why the fused engine would not take the tf.data path's steps, or None."""
    if setup.strategy_name not in _FUSED_STRATEGIES:
        return f"the {setup.strategy_name} strategy (fused runs on one device or mirrored)"
    if setup.jit_compile and setup.num_replicas > 1:
        return "jit_compile with several replicas (the fused engine compiles one device's step with XLA)"
    spec_reason = fused_obstacle(train.as_dict())
    if spec_reason:
        return spec_reason
    if data_reason:
        return data_reason
    budget = train.fused_memory_mb
    if nbytes > budget * 2**20:
        return f"the training and validation splits take {nbytes / 2**20:.0f} MB, over train.fused_memory_mb {budget}"
    per_batch = [type(c).__name__ for c in callbacks if needs_batch_hooks(c)]
    if per_batch:
        return f"callbacks acting on every batch: {', '.join(per_batch)}"
    return None


def needs_batch_hooks(callback) -> bool:
    """Whether a callback acts between batches (the fused epoch has no batch boundary in Python).

    A callback that overrides a batch hook acts there, unless its own frequency says it
    works per epoch (ModelCheckpoint's and BackupAndRestore's `save_freq`, TensorBoard's
    `update_freq` without profiling or steps-per-second).
    """
    base = keras.callbacks.Callback
    if not any(getattr(type(callback), h) is not getattr(base, h) for h in _BATCH_HOOKS):
        return False
    if getattr(callback, "save_freq", None) == "epoch":
        return False
    if isinstance(callback, keras.callbacks.TensorBoard):
        profiling = bool(getattr(callback, "_should_trace", False))
        return callback.update_freq != "epoch" or callback.write_steps_per_second or profiling
    return True
