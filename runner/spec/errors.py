"""The one error type a spec mistake becomes, wherever it is found, and its wording helpers."""

from __future__ import annotations

import difflib
import re
import unicodedata

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


def format_path(path) -> str:
    """`("data", "train", "stages", 2, "batch")` -> `data.train.stages[2].batch`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


class SpecError(Exception):
    """A mistake in a spec, located in its file.

    Printed as `file:line:col: json.path: message` so editors and CI can jump to it.
    """

    def __init__(self, message, *, file=None, line=None, column=None, path=(), hint=None, via=None):
        self.message = message
        self.via = via  # the spec file given to pipe, when the error is in a file it extends
        self.file = file
        self.line = line
        self.column = column
        self.path = tuple(path)
        self.hint = hint
        super().__init__(str(self))

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
_ARRAY_1D = re.compile(r"\[(?:\s*-?(?:\d+\.\d*(?:e[+-]?\d+)?|nan|inf)){2,}\s*\]")  # [0. 1.5 nan], never [32, 10]


def without_values(text: str) -> str:
    """`text` (a library's message) with the data's values left out: a Variable's `value=...`
    and printed numpy arrays (weights, input rows) become `<values>`; shapes such as [32, 10] stay."""
    text = _VARIABLE_VALUE.sub(">", text)
    text = _ARRAY_2D.sub("<values>", text)
    return _ARRAY_1D.sub("<values>", text)
