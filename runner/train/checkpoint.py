"""Checkpoints for resume: saved at epoch ends (at most every N seconds), restored into a new run directory."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from runner.spec.errors import SpecError
from runner.train.result import TrainResult


# Saving costs milliseconds: on epochs of a millisecond it would be most of the run. At
# most one save per interval (and always the last epoch) bounds both the cost and the work
# a crash can lose.
DEFAULT_EVERY_SECONDS = 30.0


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` at epoch ends, at most every `every_seconds`.

    The last completed epoch is always saved when training ends, or is interrupted
    between epochs (`on_train_end`, `save_pending`). An epoch cut short is never saved:
    its weights are part-way, and resume restarts it from the last completed epoch.

    Args:
        manager: the checkpoint manager (model, optimizer, epoch variable).
        epoch: the epoch variable saved with them (the next epoch to run).
        every_seconds: the least time between two saves; 0 saves every epoch.
    """

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable,
                 every_seconds: float = DEFAULT_EVERY_SECONDS):
        super().__init__()
        self.manager = manager
        self.epoch = epoch
        self.every_seconds = every_seconds
        self._last_save = time.monotonic()
        self._pending = None  # the last completed epoch, when not yet saved
        self._in_epoch = False

    def on_epoch_begin(self, epoch, logs=None):
        self._in_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        self._in_epoch = False
        self._pending = epoch + 1
        if time.monotonic() - self._last_save >= self.every_seconds:
            self.save_pending()

    def on_train_end(self, logs=None):
        self.save_pending()

    def save_pending(self) -> None:
        """Save the last completed epoch, unless saved already or an epoch is under way."""
        if self._pending is None or self._in_epoch:
            return
        self.epoch.assign(self._pending)
        self.manager.save(checkpoint_number=self._pending)
        self._pending = None
        self._last_save = time.monotonic()


@contextlib.contextmanager
def saved_on_interrupt(checkpoint: EpochCheckpoint):
    """On Ctrl-C between epochs, save the last completed epoch the interval skipped."""
    try:
        yield
    except KeyboardInterrupt:
        checkpoint.save_pending()
        raise


@dataclass
class PreviousRun:
    run_dir: Path
    checkpoint: str


def previous_run(run_dir) -> PreviousRun:
    """The run directory to resume from and its last checkpoint."""
    run_dir = Path(run_dir)
    checkpoint = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if checkpoint is None:
        raise SpecError(f"no checkpoint to resume from in {run_dir / 'checkpoints'}", file=run_dir)
    return PreviousRun(run_dir, checkpoint)


def restore(checkpoint: EpochCheckpoint, previous: PreviousRun) -> int:
    """Restore model, optimizer and epoch from the previous run; returns the next epoch."""
    status = checkpoint.manager.checkpoint.restore(previous.checkpoint)
    status.assert_existing_objects_matched()
    return int(checkpoint.epoch.numpy())


def continue_history(previous, result: TrainResult, initial_epoch: int) -> TrainResult:
    """Prefix the epochs trained before the resume (from the previous run's files)."""
    if previous is None or initial_epoch == 0:
        return result
    history = _read_json(previous.run_dir / "history.json")
    for key, values in result.history.items():
        values[:0] = history.get(key, [])[:initial_epoch]
    before = _read_json(previous.run_dir / "trajectories.json")
    for key, values in result.trajectories.items():
        values[:1] = before.get(key, [])[: initial_epoch + 1] or values[:1]
    result.epochs_run = len(result.history.get("loss", []))
    return result


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def epoch_checkpoint(model, optimizer, run_dir, config=True) -> EpochCheckpoint:
    """The run's checkpoint; `config` is `outputs.checkpoints` (its save interval)."""
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=3)
    return EpochCheckpoint(manager, epoch, every_seconds=save_interval(config))


def checkpoints_enabled(config) -> bool:
    """`outputs.checkpoints`: true/false, or an object (enabled unless `enabled: false`)."""
    if isinstance(config, dict):
        return config.get("enabled", True)
    return config is None or bool(config)


def save_interval(config) -> float:
    """Seconds between saves from `outputs.checkpoints` ({every_epoch} or {every_seconds})."""
    if not isinstance(config, dict):
        return DEFAULT_EVERY_SECONDS
    if config.get("every_epoch"):
        return 0.0
    return float(config.get("every_seconds", DEFAULT_EVERY_SECONDS))
