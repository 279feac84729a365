"""The one error type a spec mistake becomes, wherever it is found, and its wording helpers."""

from __future__ import annotations

import difflib
import re

from runner.errors import EXIT_INVALID, PipeError, printable  # noqa: F401 -- printable: its home for the spec's readers

def format_path(path) -> str:
    """`("data", "train", "stages", 2, "batch")` -> `data.train.stages[2].batch`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class SpecError(PipeError):
    """A mistake in a spec, located in its file.

    Printed as `file:line:col: json.path: message` so editors and CI can jump to it.
    """

    exit_code = EXIT_INVALID
    # What to do when the spec cannot change (`pipe predict` on a finished run reading a file
    # the run's source options read): advice about the file, where `hint` is about the spec.
    file_hint = None

    def __init__(self, message, *, file=None, line=None, column=None, path=(), hint=None, via=None):
        self.message = message  # the mistake alone, without its place
        self.via = via  # the spec file given to pipe, when the error is in a file it extends
        self.file = file
        self.line = line
        self.column = column
        self.path = tuple(path)
        self.hint = hint
        Exception.__init__(self, str(self))  # `message` stays the mistake alone; the args are the located line

    @property
    def full_message(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def via_note(self) -> str:
        """` [from child.yaml]` when the error is in a file the spec given to pipe extends."""
        return f" [from {self.via}]" if getattr(self, "via", None) is not None else ""

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = printable(self.file)
            if self.line is not None:
                where += f":{self.line}:{self.column or 1}"
            where += ": "
        dotted = printable(format_path(self.path))
        return f"{where}{dotted + ': ' if dotted else ''}{printable(self.full_message + self.via_note)}"

    def report(self, command: str) -> str:
        """Located lines need no command name: `spec.yaml:12:5: train.epochs: ...`."""
        return str(self)

    def as_list(self) -> list[SpecError]:
        """The mistakes this error holds, one per located line."""
        return [self]

    def as_dict(self) -> dict:
        return {
            "file": None if self.file is None else str(self.file),
            "line": self.line,
            "column": self.column,
            "path": format_path(self.path),
            "message": self.full_message,
        } | ({} if self.via is None else {"spec": str(self.via)})


class SpecErrors(SpecError):
    """Every mistake found in one spec, sorted by line; printed one per line."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        Exception.__init__(self, "\n".join(map(str, errors)))

    @property
    def message(self) -> str:
        return str(self)

    def as_list(self) -> list[SpecError]:
        return list(self.errors)

    def __str__(self) -> str:
        return "\n".join(map(str, self.errors))


def did_you_mean(word, options) -> str | None:
    """`did you mean 'x'?` for the option closest to `word`, ignoring case, or None."""
    options = [str(o) for o in options]
    by_lower = {}
    for option in options:
        by_lower.setdefault(option.lower(), option)
    match = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    if not match:
        return None
    best = by_lower[match[0]]
    # Keras also resolves lower-case names ("adam"): keep the user's own spelling style.
    if str(word).islower() and match[0] in options:
        best = match[0]
    return f"did you mean '{best}'?"


def first_line(error: BaseException) -> str:
    """The first line of a (TensorFlow) error's message: the part a user can act on."""
    text = getattr(error, "message", None) or str(error)
    # TensorFlow prefixes errors raised inside a function with `{{function_node ...}}`.
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"'?\s+failed with\s+", ": ", re.sub(r"\s*\[Op:[^\]]*\].*", "", text))
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


_VARIABLE_VALUE = re.compile(r", value=[^>]*>")  # a Variable's repr: `<Variable path=..., value=[[0.1 ...]]>`
_ARRAY_2D = re.compile(r"\[\[[\s\d.eE+\-naifNAIF\[\]]*?\]\](?:\s*\.\.\.)?")  # numpy's [[0. 0.]\n [1. 2.]]
# An EagerTensor's repr (`numpy=array([-2. , -1.75, ...], dtype=float32)`) and numpy's array(...) repr
_NUMPY_REPR = re.compile(r"array\(\[[^()]*?\](?:, dtype=\w+)?\)|numpy=(?!<values>)[^>]*(?=>)")
_RUN_OF_VALUES = re.compile(r"<values>(?:[\s,]*<values>)+")
_ARRAY_1D = re.compile(r"\[(?:\s*-?(?:\d+\.\d*(?:e[+-]?\d+)?|nan|inf)){2,}\s*\]")  # [0. 1.5 nan], never [32, 10]


# TensorFlow's sparse losses quote the offending label: "Received a label value of 7 which is outside ..."
_LABEL_VALUE = re.compile(r"Received a label value of -?\d+ which is outside")


def without_values(text: str) -> str:
    """`text` (a library's message) with the data's values left out: a Variable's `value=...`
    and printed numpy arrays (weights, input rows) become `<values>`; shapes such as [32, 10] stay."""
    text = _VARIABLE_VALUE.sub(">", text)
    text = _NUMPY_REPR.sub(lambda m: "numpy=<values>" if m.group().startswith("numpy=") else "<values>", text)
    text = _LABEL_VALUE.sub("A label value is outside", text)  # the class is the data's, kept out
    text = _ARRAY_2D.sub("<values>", text)
    text = _ARRAY_1D.sub("<values>", text)
    return _RUN_OF_VALUES.sub("<values>", text)  # rows of an array, one placeholder each: said once
