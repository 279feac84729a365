"""The one family of errors a user sees: each says what went wrong in one paragraph and
which exit code the command ends with.

Every part raises its own kinds (a located `SpecError`, a `WriteError`, an `ExportRefused`,
...); the command line turns any of them into its message on stderr and its exit code in
one place (`runner.commands.reporting`), by type. Imports nothing of runner: any part may
raise these, the validate path included.
"""

from __future__ import annotations

import unicodedata

EXIT_INVALID = 1  # a spec is invalid (found by validate, or while building a run)
EXIT_USAGE = 2  # the command line itself is wrong (click's code for usage errors)
EXIT_RUN_FAILED = 3  # the spec was fine but training or evaluation failed
EXIT_DIVERGED = 4  # the training loss became NaN or infinite
EXIT_BROKEN_INSTALL = 5  # TensorFlow, Keras or tfds cannot be imported (pipe doctor says why)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: a signal's own code is 128 + its number


# Line and paragraph separators, and the characters that reorder text (bidi overrides): a
# terminal or a log reader would show them as layout, not as the text they are.
_LAYOUT = {"\u2028", "\u2029"}


def printable(text) -> str:
    """`text` safe to print on one line of a terminal, a log or a CI annotation.

    Everything pipe prints that came from a file or a name (a spec file's name, a CSV
    header cell, a run directory's name, a manifest's values, a metric's name) goes
    through here: control characters (ESC, CR, LF, BEL, C1 controls, DEL) and Unicode
    format characters (bidi overrides, zero-width joiners) are shown as Python escapes
    (`\\x1b`, `\\n`, `\\u202e`), so no escape sequence reaches the terminal and no
    forged line starts.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or (ch == " ") else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") and ch not in _LAYOUT:
        return ch  # other non-printables Python names so (e.g. non-breaking spaces) are harmless
    return repr(ch)[1:-1] if ch not in ("'", '"') else ch


class PipeError(Exception):
    """An error a user sees: a one-paragraph `message` and the `exit_code` it ends a command with.

    A kind sets `exit_code` as a class attribute; one error may set its own (`exit_code=`).
    A kind may also derive from the built-in error it is (OSError, ValueError,
    FileNotFoundError), so code that catches those keeps catching it.
    """

    exit_code: int = EXIT_RUN_FAILED

    def __init__(self, message: str = "", *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def report(self, command: str) -> str:
        """What `pipe <command>` prints on stderr as it ends with this error, safe to print
        as it is (what came from a file is escaped, see `printable`)."""
        return printable(f"pipe {command}: {self}")


class PipeInterrupted(KeyboardInterrupt):
    """A command stopped by a signal: an exit code and a message, as a PipeError has.

    Not a PipeError: like Python's own KeyboardInterrupt, it must pass every `except
    Exception` between the signal and the command line (ours, Keras's, TensorFlow's), or a
    Ctrl-C could be swallowed as if it were a failure.
    """

    exit_code: int = EXIT_INTERRUPTED

    def report(self, command: str) -> str:
        return f"pipe {command}: interrupted"

