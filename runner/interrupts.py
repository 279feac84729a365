"""SIGINT, SIGTERM and SIGHUP stop a run the same way: an exception, never a half-written file.

The handler raises `RunInterrupted` in the main thread, where Python runs signal handlers
between bytecodes (so between training steps). Inside `deferred()` — the epoch-end writes of
history, checkpoint and manifest — a signal is held and raised when the section ends, so an
interrupted run never leaves a checkpoint or table that is half written.
"""

from __future__ import annotations

import contextlib
import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_deferring = 0
_pending: int | None = None


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal. Exit code 128 + the signal's number (130, 143, 129)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.run_dir = None  # set by run_spec once the run directory exists
        self.epochs_done = None
        super().__init__(self.signal_name)


def _handle(signum, frame):
    global _pending
    if _deferring:
        _pending = _pending or signum
        return
    raise RunInterrupted(signum)


@contextlib.contextmanager
def signals_raise():
    """While inside, SIGINT/SIGTERM/SIGHUP raise `RunInterrupted`; the old handlers come back after.

    Only the main thread can set handlers; elsewhere (a test runner's worker thread) this
    does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred():
    """A section a signal must not cut: a signal arriving inside is raised at its end."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise RunInterrupted(signum)
