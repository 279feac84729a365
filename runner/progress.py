"""A run's progress in its directory: what each epoch end writes, and how the run ended.

At each epoch end, in this order and without a signal cutting in: the tables (history,
trajectories, metrics), the checkpoint, then the manifest's heartbeat. Tables before the
checkpoint, so the last checkpoint never holds an epoch the history lacks; a resume cuts
the history back to the checkpoint's epoch.
"""

from __future__ import annotations

import errno
import math
import signal
import sys
from pathlib import Path

import tensorflow as tf

from runner.interrupts import RunInterrupted, deferred
from runner.outputs import files
from runner.outputs.epochs import EpochLog
from runner.train.divergence import TrainingDiverged
from runner.train.result import TrainResult


# Errors that mean a file could not be written (full, read-only, not a folder, not allowed).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                 errno.EACCES, errno.EPERM}


class Progress:
    """The epoch-end hook of both loops and the manifest's last word.

    Args:
        run_dir: the new run's directory.
        manifest: its `Manifest`, already written (`running`).
        previous: the `Resume` this run continues, or None.
    """

    def __init__(self, run_dir: Path, manifest, previous=None):
        self.run_dir = Path(run_dir)
        self.manifest = manifest
        self.previous = previous
        self.log = EpochLog(run_dir, *((previous.history, previous.trajectories) if previous else ()))
        self.checkpoint = None

    @property
    def initial_epoch(self) -> int:
        return self.previous.epoch if self.previous is not None else 0

    def epoch_end(self, checkpoint=None):
        """The hook `(epoch, logs, scalars)` both loops call after each epoch."""
        self.checkpoint = checkpoint

        def hook(epoch, logs, scalars=None):
            loss = logs.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise TrainingDiverged(epoch, None, float(loss))
            with deferred():
                self.log.record(logs, scalars)
                if checkpoint is not None:
                    self._save(checkpoint, epoch)
                self.manifest.heartbeat(epochs_done=self.log.epochs, last_checkpoint=self._last_checkpoint())

        return hook

    def _save(self, checkpoint, epoch: int) -> None:
        try:
            checkpoint.on_epoch_end(epoch)
        except (tf.errors.OpError, OSError) as e:
            raise files.write_failure(self.run_dir / "checkpoints" / f"ckpt-{epoch + 1}", e) from e

    def _last_checkpoint(self):
        return self.checkpoint.manager.latest_checkpoint if self.checkpoint is not None else None

    def result(self, trained: TrainResult) -> TrainResult:
        """The whole run's tables: the resumed run's epochs, then this one's."""
        return TrainResult(history=self.log.history, trajectories=self.log.trajectories, epochs_run=self.log.epochs)

    def end(self, error: BaseException) -> BaseException:
        """Record in the manifest how `error` ended the run; returns the exception to raise.

        A Ctrl-C that came before the signal handlers were set becomes `RunInterrupted` too.
        """
        if isinstance(error, KeyboardInterrupt) and not isinstance(error, RunInterrupted):
            error = RunInterrupted(signal.SIGINT)
        if isinstance(error, OSError) and error.filename and error.errno in _WRITE_ERRNOS:
            error = files.write_failure(error.filename, error)  # e.g. a Keras callback's own file
        fields = {"epochs_run": self.log.epochs, "last_checkpoint": self._last_checkpoint()}
        if isinstance(error, RunInterrupted):
            error.run_dir, error.epochs_done = self.run_dir, self.log.epochs
            error.resume_from = self.run_dir if fields["last_checkpoint"] else (
                self.previous.run_dir if self.previous is not None else None)
            status, reason = "interrupted", f"stopped by {error.signal_name} after {self.log.epochs} epochs"
        elif isinstance(error, TrainingDiverged):
            error.run_dir = self.run_dir
            error.last_checkpoint = fields["last_checkpoint"] or (self.previous.checkpoint if self.previous else None)
            status, reason = "diverged", str(error)
            fields["diverged_at"] = {"epoch": error.epoch + 1, "step": None if error.step is None else error.step + 1}
        else:
            status, reason = "failed", f"{type(error).__name__}: {error}"
            fields["error"] = reason
        try:
            with deferred():
                self.manifest.finish(status, reason, **fields)
        except OSError as e:  # the original error matters more; say what could not be recorded
            print(f"pipe run: could not record the end of the run: {e}", file=sys.stderr)
        return error
