"""Checkpoints for resume: saved at epoch ends (at most every N seconds), restored into a new run directory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from runner.spec.errors import SpecError, without_values
from runner.spec.sections import CheckpointsConfig


# Saving costs milliseconds: on epochs of a millisecond it would be most of the run. At
# most one save per interval (and always the last epoch) bounds both the cost and the work
# a crash can lose.
DEFAULT_EVERY_SECONDS = float(CheckpointsConfig.every_seconds)  # the section's default


class EpochCheckpoint:
    """Saves a `tf.train.CheckpointManager` at epoch ends, at most every `every_seconds`.

    At each epoch end the caller asks whether a save is `due` (the interval has passed, or
    the epoch is `final`: the last one, or one a signal stops the run after), then `save`s
    it or notes it `skipped`. An epoch cut short is never saved: its weights are part-way,
    and a resume restarts it.

    Args:
        manager: the checkpoint manager (model, optimizer, epoch variable).
        epoch: the epoch variable saved with them (the next epoch to run).
        every_seconds: the least time between two saves; 0 saves every epoch.
    """

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable,
                 every_seconds: float = DEFAULT_EVERY_SECONDS):
        self.manager = manager
        self.epoch = epoch
        self.every_seconds = every_seconds
        self._last_save = time.monotonic()
        self.unsaved = None  # the last completed epoch when the interval skipped its save

    def due(self, final: bool = False) -> bool:
        return final or time.monotonic() - self._last_save >= self.every_seconds

    def save(self, epoch: int) -> None:
        """Save the state at the end of `epoch` (0-based) as checkpoint `epoch + 1`."""
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        self.unsaved = None
        self._last_save = time.monotonic()

    def skipped(self, epoch: int) -> None:
        self.unsaved = epoch + 1


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
    reason = without_values(getattr(error, "message", None) or str(error)).strip()
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


def check_model_fits(model, previous: PreviousRun) -> None:
    """Refuse a checkpoint whose model does not fit `model`, before the new run creates anything.

    The model's variables are restored from it (the run restores them again, with the
    optimizer's, once training starts).

    Raises:
        SpecError: the checkpoint's model differs (naming the checkpoint).
    """
    try:
        status = tf.train.Checkpoint(model=model).restore(previous.checkpoint).expect_partial()
        status.assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise _corrupt(previous.checkpoint, e) from None


def epoch_checkpoint(model, optimizer, run_dir, config=None) -> EpochCheckpoint:
    """The run's checkpoint; `config` is `outputs.checkpoints` (its save interval): its
    `CheckpointsConfig`, or the value as the spec writes it."""
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    # Keras leaves its layers' random generators (Dropout's masks) out of a model's
    # checkpoint; a resumed run must go on drawing what the uninterrupted one drew.
    random = [v for v in getattr(model, "non_trainable_variables", []) if v.name == "seed_generator_state"]
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch,
                                     **({"random_generators": random} if random else {}))
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=3)
    return EpochCheckpoint(manager, epoch, every_seconds=save_interval(config))


def saving(checkpoint: EpochCheckpoint, config) -> EpochCheckpoint | None:
    """The checkpoint the epoch ends save, or None when `outputs.checkpoints` turns saving off."""
    return checkpoint if _enabled(config) else None


def saves_every_epoch(config) -> bool:
    """Whether `outputs.checkpoints` saves every epoch's state ({every_epoch: true})."""
    return _enabled(config) and save_interval(config) == 0


def _enabled(config) -> bool:
    """`outputs.checkpoints`: true/false, or an object enabled unless `enabled: false`."""
    return _section(config).enabled


def save_interval(config) -> float:
    """Seconds between saves from `outputs.checkpoints` ({every_epoch} or {every_seconds})."""
    return _section(config).interval


def _section(config) -> CheckpointsConfig:
    """`outputs.checkpoints` as its section: given so, or as the spec writes it (None, a bool, a mapping)."""
    return config if isinstance(config, CheckpointsConfig) else CheckpointsConfig.of(None if config is None else config)
