"""SIGINT, SIGTERM and SIGHUP stop a run the same way: an exception, never a half-written file.

The handler raises `RunInterrupted` in the main thread, where Python runs signal handlers
between bytecodes (so between training steps). Inside `deferred()` — the epoch-end writes of
history, checkpoint and manifest — a signal is held and raised when the section ends, so an
interrupted run never leaves a checkpoint or table that is half written.

While a completed epoch waits unsaved (checkpoints are saved at most every N seconds), a
first signal is held until the current epoch ends, so that epoch is saved and a resume
loses nothing; such epochs are shorter than the save interval. A second signal stops the
run at once.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading

from runner.errors import PipeInterrupted, printable

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_deferring = 0
_pending: int | None = None
_hold_till_epoch_end = False


class RunInterrupted(PipeInterrupted):
    """A run stopped by a signal. Exit code 128 + the signal's number (130, 143, 129)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.run_dir = None  # set by run_spec once the run directory exists
        self.epochs_done = None
        self.resume_from = None  # the run directory --resume continues, when a checkpoint was saved
        self.command_line = None  # how `pipe run` was called (set by it), for the command that resumes
        super().__init__(self.signal_name)

    def report(self, command: str) -> str:
        """What stopped the run, where it is, and the exact command that continues it."""
        name = self.signal_name
        if self.run_dir is None:
            return f"pipe {command}: interrupted by {name} before training started; nothing to resume"
        done = self.epochs_done
        lines = [f"pipe {command}: interrupted by {name} after {done} epoch{'' if done == 1 else 's'}",
                 f"run directory: {printable(self.run_dir)}"]
        if self.resume_from is None or self.command_line is None:
            return "\n".join(lines + ["nothing to resume: no checkpoint was saved"])
        from runner.outputs.tracking_uri import mask  # a password in a --set URI is not printed

        command_line = shlex.join([*self.command_line, "--resume", str(self.resume_from)])
        return "\n".join(lines + ["resume with: " + printable(mask(command_line))])


def _handle(signum, frame):
    global _pending
    if _deferring or (_hold_till_epoch_end and _pending is None):
        _pending = _pending or signum
        return
    raise RunInterrupted(signum)


@contextlib.contextmanager
def signals_raise():
    """While inside, SIGINT/SIGTERM/SIGHUP raise `RunInterrupted` (unless ignored); the old
    handlers come back after.

    Only the main thread can set handlers; elsewhere (a test runner's worker thread) this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _pending
    _pending = None
    # A signal the process was started ignoring (`nohup` ignores SIGHUP, a shell's
    # background job SIGINT) stays ignored: the user asked for that.
    previous = {s: signal.signal(s, _handle) for s in HANDLED if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        hold_till_epoch_end(False)
        _pending = None  # a signal held past the run's end: the run is over
        for s, handler in previous.items():
            signal.signal(s, handler)


def hold_till_epoch_end(hold: bool) -> None:
    """Whether a first signal waits for the epoch's end (see the module's doc)."""
    global _hold_till_epoch_end
    _hold_till_epoch_end = hold


def signal_held() -> bool:
    """Whether a signal is waiting for the end of a deferred section."""
    return _pending is not None


@contextlib.contextmanager
def deferred(release: bool = True):
    """A section a signal must not cut: a signal arriving inside is raised at its end
    (unless not `release`: then it stays held for the next section that releases)."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if release and not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise RunInterrupted(signum)
