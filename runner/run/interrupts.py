"""SIGINT, SIGTERM and SIGHUP stop a run the same way: an exception, never a half-written file.

The handler raises `RunInterrupted` in the main thread, where Python runs signal handlers
between bytecodes (so between training steps). Inside `deferred()` — the epoch-end writes of
history, checkpoint and manifest — a signal is held and raised when the section ends, so an
interrupted run never leaves a checkpoint or table that is half written.

While a completed epoch waits unsaved (checkpoints are saved at most every N seconds), a
first signal is held until the current epoch ends, so that epoch is saved and a resume
loses nothing; such epochs are shorter than the save interval. A second signal stops the
run at once.

TensorFlow can hold the main thread inside one operation (or one fused call over many
batches) far longer than that, and a handler waits for it. So a thread watches the signals
as they arrive: one the main thread has not answered within `ANSWER_SECONDS` (a second
signal: within a second) ends the process from that thread, after `on_unanswered` recorded
the run as interrupted at its last saved epoch. Nothing is half written: a checkpoint is
written aside and renamed, and the main thread, should it come back, waits.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import sys
import threading
import time

from runner.errors import PipeInterrupted, printable

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_NUMBERS = {int(s) for s in HANDLED}  # as the wakeup pipe gives them

_deferring = 0
_pending: int | None = None
_hold_till_epoch_end = False

# How long the main thread has to answer a signal before the watching thread ends the process.
ANSWER_SECONDS = 30.0
_answered = 0  # signals whose handler ran
_taken_over = threading.Event()  # the watching thread is ending the process
_on_unanswered = None  # records and says how the run stopped; see `on_unanswered`
# `pipe run` as called, so the watching thread can say how to resume (set by the run command).
resume_command: list[str] | None = None


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
    global _pending, _answered
    _answered += 1
    if _taken_over.is_set():
        threading.Event().wait()  # the watching thread is ending the process: nothing more here
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
    global _pending, _answered
    _pending, _answered = None, 0
    # A signal the process was started ignoring (`nohup` ignores SIGHUP, a shell's
    # background job SIGINT) stays ignored: the user asked for that.
    previous = {s: signal.signal(s, _handle) for s in HANDLED if signal.getsignal(s) != signal.SIG_IGN}
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch, args=(read,), name="pipe-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        hold_till_epoch_end(False)
        _pending = None  # a signal held past the run's end: the run is over
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write)  # the watcher reads the end of the pipe and stops
        watcher.join()
        os.close(read)


def on_unanswered(end) -> None:
    """`end(signum)` records how a signal the main thread did not answer stopped the run and
    says so (the run sets it once its directory exists; None: nothing to record)."""
    global _on_unanswered
    _on_unanswered = end


def _watch(read: int) -> None:
    """Wait for signals; end the process when the main thread leaves one unanswered."""
    received = 0
    while True:
        data = os.read(read, 64)
        if not data:
            return  # the run is over
        signals = [n for n in data if n in _NUMBERS]
        if not signals:
            continue
        received += len(signals)
        deadline = time.monotonic() + (1.0 if received > 1 else ANSWER_SECONDS)
        while _answered < received:
            left = deadline - time.monotonic()
            if left <= 0:
                _end_unanswered(signals[-1])
            if select.select([read], [], [], min(left, 0.1))[0]:
                break  # another signal (or the run's end): read it, with its own deadline


def _end_unanswered(signum: int) -> None:
    _taken_over.set()
    try:
        if _on_unanswered is not None:
            _on_unanswered(signum)
        else:
            print(RunInterrupted(signum).report("run"), file=sys.stderr, flush=True)
    finally:
        os._exit(128 + signum)


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
