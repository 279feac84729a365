"""Checkpoints for resume: saved at every epoch end, restored into a new run directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from runner.spec.errors import SpecError
from runner.train.result import TrainResult


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` at the end of every epoch (for resume)."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable):
        super().__init__()
        self.manager = manager
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)



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


def epoch_checkpoint(model, optimizer, run_dir) -> EpochCheckpoint:
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=3)
    return EpochCheckpoint(manager, epoch)
