"""Paths a spec may name inside a run directory: relative, and staying inside it.

Checked here without touching the disk, so `pipe validate` finds an escaping path; the run
directory's owner (`runner.outputs.run_dir.RunDir`) applies the same check, then also
refuses a path that leaves the directory through a symlink.
"""

from __future__ import annotations

import re
import string
from pathlib import PurePosixPath

# What pipe itself writes at the top of a run directory: a spec's path may not replace or
# delete these (BackupAndRestore removes its backup_dir when training ends).
RUN_DIR_OWN = ("spec.yaml", "manifest.json", "history.json", "history.csv", "metrics.json", "model.keras",
               "saved_model", "history.png", "predictions.png", "trajectories.json", "trajectories.csv",
               "trajectories.png", "confusion_matrix.png", "checkpoints", "error.log", "sources")

# An argument whose name says it is a path: filepath, filename, log_dir, backup_dir, ...
# An argument names a file or folder when one of its words says so (`filepath`, `log_dir`,
# `backup_dir`, `filename`), not when a word merely contains the letters (`profile_batch`).
PATH_ARGUMENT = re.compile(r"(^|_)(file)?(path|dir|directory|file|filename)s?($|_)", re.IGNORECASE)
# Of those, the ones that name a file Keras writes (CSVLogger's filename, ModelCheckpoint's
# filepath), not a folder (TensorBoard's log_dir, BackupAndRestore's backup_dir).
FILE_ARGUMENT = re.compile(r"(^|_)(file)?(path|file|filename)s?($|_)", re.IGNORECASE)


def folder_problem(value: str, example: str = "train.csv") -> str | None:
    """Why a file argument's `value` names a folder, or None: `logs/` would have Keras write
    a file named `logs` (CSVLogger) or fail at the first save (ModelCheckpoint)."""
    if value.endswith(("/", "\\")):
        return f"{value!r} ends in {value[-1]!r}, so it names a folder; give the file's name, such as {value + example!r}"
    return None


def escape_problem(value) -> str | None:
    """Why `value` cannot name a file inside a run directory, or None when it can."""
    if not isinstance(value, str) or not value.strip():
        return "is empty"
    if "\0" in value:
        return "holds a NUL character"
    if value.startswith("~"):
        return "starts with '~' (a home directory)"
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        return "is an absolute path"
    if _unsafe_format_field(value):
        return ("has a {...} field that is not a plain name with a number format such as {epoch:02d} or "
                "{val_loss:.4f} (Keras fills only {epoch}, {batch} and logged values)")
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if ".." in parts:
        return "climbs out with '..'"
    inner = [p for p in parts if p != "."]
    if not inner:
        return "is the run directory itself"
    if inner[0] in RUN_DIR_OWN:
        return f"would replace {inner[0]!r}, which pipe writes"
    return None


def escape_message(value, problem: str) -> str:
    """The one wording of a refused run-directory path, for validate and run alike."""
    return (f"{value!r} {problem}: a spec writes only inside its run directory; "
            "give a path relative to it, such as 'logs/train.csv'")


# A format spec a path template may use: a number's width, zero padding, sign and precision
# (`{epoch:03d}`, `{val_loss:.4f}`), nothing else. A fill character, `c` (`chr`), `s` or a
# field of attributes could make the formatted value hold a path character; a width of
# millions would make a name no file system takes.
PATH_FORMAT_SPEC = re.compile(r"[+ -]?0?\d{0,2}(\.\d{1,2})?[dfFeEgG%]?")


def _unsafe_format_field(value: str) -> bool:
    """Whether a `{...}` field is not a plain name with, at most, a number's format.

    Keras formats callback file names with `str.format(epoch=..., **logs)` at every save,
    after pipe checked the template: a field such as `{epoch.__class__}` would reach into
    Python objects, and `{epoch:c}` turns epoch 46 into '.' and 47 into '/'.
    """
    try:
        fields = [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(value) if name is not None]
    except ValueError:
        return True
    return any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not PATH_FORMAT_SPEC.fullmatch(spec)
               for name, spec in fields)


# A report line's format spec: alignment, sign, width and precision of a number, within
# a console line's width (`{loss:>10.4f}`, `{epoch:3d}`); no `c` (chr), no width of millions.
REPORT_FORMAT_SPEC = re.compile(r"([^{}]?[<>=^])?[+ -]?#?0?\d{0,3}[,_]?(\.\d{1,2})?[bdeEfFgGnoxX%]?")


def template_problem(template: str) -> str | None:
    """Why a report template (`'Epoch {epoch}: W = {w:.2f}'`) cannot be printed safely, or None.

    Fields must be plain names: `{loss.real}` or `{x[0]}` would reach into Python objects;
    a format spec may only align and size a number, up to 999 characters wide.
    """
    try:
        fields = [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        return f"is not a format template: {e}"
    for name, spec in fields:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return (f"has the field {{{name}}}: fields are plain names of the loss, metrics and variables "
                    "(no attributes, indexes or positions)")
        if not REPORT_FORMAT_SPEC.fullmatch(spec):
            return (f"has the format {{{name}:{spec}}}: a field may only align, size (up to 999 characters) "
                    "and set the precision of a number, such as {loss:.4f} or {epoch:>3}")
    return None
