"""What a user reads on the console: TensorFlow's C++ log kept in a file, bars only on terminals.

TensorFlow's C++ start-up lines (oneDNN, CUDA drivers, cuInit on CPU-only machines) are
written to file descriptor 2 before absl logging is initialised, so neither
`TF_CPP_MIN_LOG_LEVEL` nor Python's logging can hide them. `TensorFlowLog` therefore
redirects the descriptor itself to a file for as long as a command runs TensorFlow, while
Python's own `sys.stderr` (pipe's messages and warnings, tracebacks) keeps the terminal.
The libraries' Python logging (TensorFlow's `WARNING:tensorflow:`, absl's, tf2onnx's) and
their Python warnings go to that log as well: they are theirs to say, not pipe's.

No TensorFlow import here: this module runs before it.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

LOG_NAME = "tensorflow.log"  # in the run directory

# Python warnings that say nothing about the user's spec when a finite dataset is used as
# designed (a finite split iterated to its end once per epoch or evaluation).
_KNOWN_NOISE = (
    r"Your input ran out of data",
)


_active: "TensorFlowLog | None" = None  # the process has one fd 2, so at most one log takes it

# Loggers that bring their own handler to the terminal (TensorFlow's, made when it is first
# imported): while a log is kept they pass their records to the root logger's, into the log.
_LIBRARY_LOGGERS = ("tensorflow", "absl", "tf2onnx")
# Packages whose Python warnings (warnings.warn) are theirs to say, into the log as well.
_LIBRARY_PACKAGES = (*_LIBRARY_LOGGERS, "keras", "tensorflow_datasets")


class TensorFlowLog:
    """File descriptor 2 redirected to a log file; `sys.stderr` still reaches the terminal.

    `start()` before importing TensorFlow; `move_to(run_dir)` once the run directory exists
    (the lines so far are copied there and the rest is written there directly); `stop()`
    restores the descriptor and returns everything captured.
    """

    def __init__(self):
        self.path: Path | None = None
        self._saved_fd: int | None = None
        self._saved_stderr = None
        self._temporary = True
        self._logging = None  # (the root logger's handler into the log, the libraries' own handlers)
        self._showwarning = None  # warnings.showwarning as it was

    @classmethod
    def start(cls) -> "TensorFlowLog":
        log = cls()
        sys.stdout.flush()
        sys.stderr.flush()
        handle, name = tempfile.mkstemp(prefix="pipe-tensorflow-", suffix=".log")
        log.path = Path(name)
        log._saved_fd = os.dup(2)
        if _writes_to_fd2(sys.stderr):
            # Python's stderr keeps the terminal: a stream over a copy of the original fd.
            log._saved_stderr = sys.stderr
            terminal = io.open(os.dup(log._saved_fd), "w", buffering=1, encoding=sys.stderr.encoding,
                               errors="backslashreplace", closefd=True)
            sys.stderr = terminal
        os.dup2(handle, 2)
        os.close(handle)
        global _active
        _active = log
        log._logging = _python_logging_to_fd2()
        log._showwarning = warnings.showwarning
        warnings.showwarning = _library_warnings_to_fd2(log._showwarning)
        return log

    def move_to(self, directory) -> Path:
        """Continue the log in `directory/tensorflow.log`, with what was captured so far."""
        target = Path(directory) / LOG_NAME
        shutil.copyfile(self.path, target)
        handle = os.open(target, os.O_WRONLY | os.O_APPEND)
        os.dup2(handle, 2)
        os.close(handle)
        if self._temporary:
            self.path.unlink(missing_ok=True)
        self.path, self._temporary = target, False
        return target

    def append_to(self, directory) -> None:
        """Continue the log at the end of `directory/tensorflow.log` (a later command on a run:
        `pipe export`); where it cannot be written (a read-only run) the log stays aside."""
        target = Path(directory) / LOG_NAME
        try:
            handle = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return
        os.write(handle, self.path.read_bytes())
        os.dup2(handle, 2)
        os.close(handle)
        if self._temporary:
            self.path.unlink(missing_ok=True)
        self.path, self._temporary = target, False

    def stop(self, show: bool = False) -> str:
        """Give descriptor 2 back; returns the captured text (also printed with `show`)."""
        if self._saved_fd is None:
            return ""
        global _active
        _active = None
        _restore_python_logging(self._logging)
        self._logging = None
        warnings.showwarning = self._showwarning
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None
        if self._saved_stderr is not None:
            sys.stderr.close()
            sys.stderr, self._saved_stderr = self._saved_stderr, None
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        if self._temporary:
            self.path.unlink(missing_ok=True)
        if show and text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()
        return text


def move_log_to(directory) -> None:
    """Continue the running command's TensorFlow log (if it keeps one) in `directory`."""
    if _active is not None:
        _active.move_to(directory)


def append_log_to(directory) -> None:
    """Continue the running command's TensorFlow log (if it keeps one) after `directory`'s."""
    if _active is not None:
        _active.append_to(directory)


class _Descriptor2:
    """A text stream over file descriptor 2 wherever it points now: the log, as it moves."""

    def write(self, text: str) -> int:
        os.write(2, text.encode("utf-8", "backslashreplace"))
        return len(text)

    def flush(self) -> None:
        pass


def _python_logging_to_fd2():
    handler = logging.StreamHandler(_Descriptor2())
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    logging.getLogger().addHandler(handler)  # TensorFlow adds no handler of its own when the root has one
    own = {}
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        own[name] = (logger.handlers[:], logger.propagate)
        logger.handlers, logger.propagate = [], True
    return handler, own


def _library_warnings_to_fd2(show):
    """`warnings.showwarning` that writes the libraries' warnings to the log and hands pipe's
    (and any other's) to `show`."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        parts = Path(str(filename)).parts
        if file is None and any(package in parts for package in _LIBRARY_PACKAGES):
            _Descriptor2().write(warnings.formatwarning(message, category, filename, lineno, line))
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def _restore_python_logging(saved) -> None:
    if saved is None:
        return
    handler, own = saved
    logging.getLogger().removeHandler(handler)
    for name, (handlers, propagate) in own.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


def progress_verbosity(verbose="auto") -> int:
    """Keras's verbose for `auto`: a progress bar on a terminal, one line per epoch otherwise.

    A progress bar redraws itself with ANSI escapes and carriage returns: in a log file or
    a CI console that is noise, so without a terminal each epoch is one line (verbose=2).
    """
    if verbose != "auto":
        return int(verbose)
    return 1 if sys.stdout.isatty() else 2


def hide_known_noise() -> None:
    """Ignore the Python warnings listed in `_KNOWN_NOISE` (process-wide, for a command's run)."""
    for message in _KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message)
