"""A run's progress in its directory: what each epoch end writes, and how the run ended.

At an epoch end, in this order and without a signal cutting in: the tables (history,
trajectories, metrics), the checkpoint, then the manifest's heartbeat. Tables before the
checkpoint, so the last checkpoint never holds an epoch the history lacks; a resume cuts
the history back to the checkpoint's epoch. Writing costs milliseconds, more than a small
epoch: the checkpoint is saved at most every N seconds (`outputs.checkpoints`), the tables
and heartbeat at most every `TABLES_EVERY_SECONDS` and with every checkpoint; all of them
after the last epoch, and the tables however the run ends. When a signal stops the run
while an epoch waits unsaved, that epoch ends and is saved first (see interrupts).
"""

from __future__ import annotations

import errno
import signal
import sys
import time
from pathlib import Path

import tensorflow as tf

from runner.run import interrupts
from runner.outputs.failure import summarise_error
from runner.run.interrupts import RunInterrupted, deferred
from runner.outputs import files
from runner.outputs.epochs import EpochLog
from runner.train.divergence import TrainingDiverged, check_finite
from runner.train.log_order import in_order
from runner.train.result import TrainResult


# The tables and heartbeat are rewritten at most this often (unless checkpoints are saved
# every epoch: then with each); a SIGKILL loses at most this much of the history.
TABLES_EVERY_SECONDS = 1.0

# Who hears of each epoch's end beyond the run directory (a sweep's pruner): see `listen`.
_listener = None


class RunPruned(BaseException):
    """A sweep's pruner stopped the run at an epoch end (not an error: the trial was not promising)."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        super().__init__(f"pruned after epoch {epoch + 1}")


def listen(listener) -> None:
    """Call `listener(epoch, logs, can_stop)` at every epoch end from now on (None: stop).

    It returns True to stop the run there (`RunPruned`), which it may only when `can_stop`
    (not inside a fused graph call, whose variables already hold a later epoch).
    """
    global _listener
    _listener = listener


# Errors that mean a file could not be written (full, read-only, not a folder, not allowed).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                 errno.EACCES, errno.EPERM}


class Progress:
    """The epoch-end hook of both loops and the manifest's last word.

    Args:
        run_dir: the new run's directory.
        manifest: its `Manifest`, already written (`running`).
        previous: the `Resume` this run continues, or None.
        validated: the split the `val_` values come from, as metrics.json names it mid-run.
    """

    def __init__(self, run_dir: Path, manifest, previous=None, validated="validation"):
        self.run_dir = Path(run_dir)
        self._owner = run_dir if hasattr(run_dir, "check_identity") else None  # a RunDir
        self.manifest = manifest
        self.previous = previous
        self.log = EpochLog(run_dir, *((previous.history, previous.trajectories) if previous else (None, None)),
                            validated=validated)
        self.checkpoint = None
        self.order: list = []  # the logged names in the spec's order (runner.train.log_order), set by train_with
        self._saved_epoch = None  # the epoch (0-based) the last save of this run holds
        self._written_at = float("-inf")

    @property
    def pruning(self) -> bool:
        """Whether a sweep's pruner listens: it may stop the run after any epoch."""
        return _listener is not None

    @property
    def initial_epoch(self) -> int:
        return self.previous.epoch if self.previous is not None else 0

    def epoch_end(self, checkpoint=None, epochs=None, model=None, within_call=False):
        """The hook `(epoch, logs, scalars)` the loops call after each epoch.

        Args:
            checkpoint: the `EpochCheckpoint` to save, or None.
            epochs: the last epoch to train (its end is always saved).
            model: its `stop_training` (set by a callback) also makes this epoch the last.
            within_call: an epoch inside a fused graph call, not its last: the variables
                hold a later epoch's state, so a held signal waits for the call's last epoch
                (whose hook can save).
        """
        self.checkpoint = checkpoint

        def hook(epoch, logs, scalars=None):
            check_finite(logs.get("loss"), epoch)
            with deferred(release=not within_call):
                self.log.record(in_order(logs, self.order), scalars)
                # A held signal ends the run after the call's last epoch, not within the call:
                # there every epoch would write the tables again (thousands of short epochs).
                final = (epochs is not None and epoch + 1 >= epochs or getattr(model, "stop_training", False)
                         or (interrupts.signal_held() and not within_call))
                self._write(checkpoint, epoch, final, within_call)
                if not final and not within_call and interrupts.signal_held():
                    # The signal came during those writes: the run ends at this epoch, saved first.
                    self._write(checkpoint, epoch, True, within_call)
                if _listener is not None and _listener(epoch, logs, not within_call) and not within_call and not final:
                    self._write(checkpoint, epoch, True, within_call)  # a pruned run keeps its epochs
                    raise RunPruned(epoch)

        return hook

    def _write(self, checkpoint, epoch: int, final: bool, within_call: bool) -> None:
        """The epoch end's tables, checkpoint and heartbeat, when due."""
        unsaved = checkpoint is not None and self._saved_epoch != epoch
        saving = unsaved and checkpoint.due(final)
        interval = min(TABLES_EVERY_SECONDS, checkpoint.every_seconds if checkpoint else TABLES_EVERY_SECONDS)
        if not (saving or final or time.monotonic() - self._written_at >= interval):
            return
        if self._owner is not None:
            self._owner.check_identity()  # a run directory swapped for a symlink ends the run
        self.log.write()
        if saving:
            self._save(checkpoint, epoch)
        elif unsaved:
            checkpoint.skipped(epoch)
        if not within_call:
            interrupts.hold_till_epoch_end(checkpoint is not None and checkpoint.unsaved is not None)
        self.manifest.heartbeat(epochs_done=self.log.epochs, last_checkpoint=self._last_checkpoint())
        self._written_at = time.monotonic()

    def _save(self, checkpoint, epoch: int) -> None:
        try:
            checkpoint.save(epoch)
            self._saved_epoch = epoch
        except (tf.errors.OpError, OSError) as e:
            raise files.write_failure(self.run_dir / "checkpoints" / f"ckpt-{epoch + 1}", e) from e

    def _last_checkpoint(self):
        return self.checkpoint.manager.latest_checkpoint if self.checkpoint is not None else None

    def result(self, trained: TrainResult) -> TrainResult:
        """The whole run's tables: the resumed run's epochs, then this one's."""
        if self.checkpoint is not None and self.previous is not None and self._last_checkpoint() is None:
            # A resumed run with no epoch left to train: the state it restored is its last
            # checkpoint, with the tables that go with it, so that it can be resumed in turn.
            with deferred():
                self._save(self.checkpoint, self.log.epochs - 1)
                self.log.write()
        if self.log.written < self.log.epochs:
            with deferred():
                self.log.write()
        return TrainResult(history=self.log.history, trajectories=self.log.trajectories, epochs_run=self.log.epochs)

    def end(self, error: BaseException) -> BaseException:
        """Record in the manifest how `error` ended the run; returns the exception to raise.

        A Ctrl-C that came before the signal handlers were set becomes `RunInterrupted` too.
        """
        if isinstance(error, KeyboardInterrupt) and not isinstance(error, RunInterrupted):
            error = RunInterrupted(signal.SIGINT)
        if isinstance(error, OSError) and error.filename and error.errno in _WRITE_ERRNOS:
            error = files.write_failure(error.filename, error)  # e.g. a Keras callback's own file
        replaced = self._owner is not None and self._owner.replaced()
        if self.log.written < self.log.epochs and not replaced:  # the epochs done since the tables were last written
            try:
                with deferred(release=False):  # a second signal must not cut the run's last words
                    self.log.write()
            except OSError as e:
                print(f"pipe run: could not write the last epochs' tables: {e}", file=sys.stderr)
        fields = {"epochs_run": self.log.epochs, "epochs_done": self.log.epochs,
                  "last_checkpoint": self._last_checkpoint()}
        if isinstance(error, RunInterrupted):
            error.run_dir, error.epochs_done = self.run_dir, self.log.epochs
            error.resume_from = self.run_dir if fields["last_checkpoint"] else (
                self.previous.run_dir if self.previous is not None else None)
            status, reason = "interrupted", f"stopped by {error.signal_name} after {self.log.epochs} epochs"
        elif isinstance(error, RunPruned):
            status, reason = "pruned", f"stopped by the sweep's pruner after {self.log.epochs} epochs"
        elif isinstance(error, TrainingDiverged):
            error.run_dir, error.epochs_done = self.run_dir, self.log.epochs
            error.last_checkpoint = fields["last_checkpoint"] or (self.previous.checkpoint if self.previous else None)
            status, reason = "diverged", str(error)
            fields["diverged_at"] = {"epoch": error.epoch + 1, "step": None if error.step is None else error.step + 1}
        else:
            status, reason = "failed", summarise_error(error)
            fields["error"] = reason
        try:
            with deferred(release=False):
                self.manifest.finish(status, reason, **fields)
        except OSError as e:  # the original error matters more; say what could not be recorded
            print(f"pipe run: could not record the end of the run: {e}", file=sys.stderr)
        return error
