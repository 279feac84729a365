"""A failed run told in one paragraph; its full traceback kept in the run directory.

A user's mistake found while running is not a bug of pipe: the terminal gets what went
wrong and where the details are (`error.log` in the run directory), not a Python traceback,
unless `pipe run --debug` asks for it.
"""

from __future__ import annotations

import re

from runner.spec.errors import without_values

_LOG_NOTE = "full traceback: "
_MAX_CHARS = 600  # one paragraph; TensorFlow's messages can run to pages


def note_error_log(error: BaseException, run_dir) -> None:
    """Write `error`'s traceback to the run directory's error.log and remember where."""
    if not run_dir.chief:  # a worker's temporary directory is removed as the run ends
        return
    log = run_dir.write_error_log(error)
    if log is not None:
        error.add_note(f"{_LOG_NOTE}{log}")


def error_log_of(error: BaseException) -> str | None:
    """Where `note_error_log` wrote the traceback of `error`, if it did."""
    for note in getattr(error, "__notes__", ()):
        if note.startswith(_LOG_NOTE):
            return note[len(_LOG_NOTE):]
    return None


def describe_failure(error: BaseException) -> str:
    """`pipe run: the run failed: <Type>: <message> (...)`, on one paragraph."""
    log = error_log_of(error)
    where = f"the full traceback is in {log}" if log else "no error.log was written"
    return f"pipe run: the run failed: {summarise_error(error)} ({where}; --debug prints it)"


def summarise_error(error: BaseException) -> str:
    """`<Type>: <message>`, on one paragraph of at most about 600 characters."""
    text = without_values(getattr(error, "message", None) or str(error))
    # TensorFlow puts the Python lines that defined the failing node before the cause
    # (they are in error.log) ...
    text = re.sub(r"Detected at node \S+ defined at \(most recent call last\):\n(?:[ \t]*(?:File .*)?\n)*", "", text)
    # ... and the graph node and op after it ([[{{node ...}}]], [Op:...]): not for users;
    # nor the data's own values (a loss's "Label values: ...").
    text = re.split(r"\s*\[\[|\s*\[Op:|\n\s*Stack trace|\s*Label values:", text)[0]
    text = re.sub(r"\s+", " ", text).strip() or type(error).__name__
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS].rstrip() + " ..."
    return f"{type(error).__name__}: {text}"
