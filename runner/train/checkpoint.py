"""Checkpoints for resume: saved at every epoch end, restored into a new run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from runner.spec.errors import SpecError


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
    """An earlier run to continue: its directory, last checkpoint and the epochs it holds."""

    run_dir: Path
    checkpoint: str
    epoch: int = 0


def previous_run(run_dir) -> PreviousRun:
    """The run directory to resume from, its last checkpoint (whatever epoch) and that epoch.

    Every tensor of the checkpoint is read once here, before anything else happens, so a
    truncated or corrupt checkpoint stops the resume up front.

    Raises:
        SpecError: no checkpoint, or one that cannot be read (naming its files).
    """
    run_dir = Path(run_dir)
    checkpoint = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if checkpoint is None:
        raise SpecError(f"no checkpoint to resume from in {run_dir / 'checkpoints'}", file=run_dir)
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        epoch = int(reader.get_tensor(_EPOCH_KEY))
    except Exception as e:  # noqa: BLE001 - the reader raises OpError, IndexError, ValueError...: all mean unreadable
        raise _corrupt(checkpoint, e) from None
    return PreviousRun(run_dir, checkpoint, epoch)


_EPOCH_KEY = "epoch/.ATTRIBUTES/VARIABLE_VALUE"


def _corrupt(checkpoint: str, error) -> SpecError:
    reason = (getattr(error, "message", None) or str(error)).strip()
    return SpecError(f"the checkpoint cannot be read ({checkpoint}.index, {checkpoint}.data-*): "
                     f"{reason.splitlines()[0] if reason else type(error).__name__}", file=checkpoint)


def restore(checkpoint: EpochCheckpoint, previous: PreviousRun) -> int:
    """Restore model, optimizer and epoch from the previous run; returns the next epoch.

    Raises:
        SpecError: the checkpoint does not fit this model (naming the checkpoint).
    """
    try:
        status = checkpoint.manager.checkpoint.restore(previous.checkpoint)
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise _corrupt(previous.checkpoint, e) from None
    return int(checkpoint.epoch.numpy())


def epoch_checkpoint(model, optimizer, run_dir) -> EpochCheckpoint:
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=3)
    return EpochCheckpoint(manager, epoch)
