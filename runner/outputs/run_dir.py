"""The run directory's one owner: every path inside it is handed out here, and none escapes.

pipe's own files (`run_dir / "manifest.json"`) and the paths a spec names (callback files,
relative to the run directory) both come from a `RunDir`; a path that is absolute, climbs
out with `..`, or leaves through a symlink is refused, so a spec writes only inside its run
directory. On a non-chief worker of a cluster the RunDir is a temporary directory that is
removed at the end: everything its callbacks write goes there and nowhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from runner.errors import PipeError
from runner.outputs.files import WriteError, create_run_dir, write_text
from runner.spec.paths import RUN_DIR_OWN, escape_message, escape_problem

ERROR_LOG = "error.log"
# Also pipe's, besides RUN_DIR_OWN: what a command other than pipe run may never replace.
# export/ holds what `pipe export` wrote, each listed in the manifest with its SHA-256: only
# pipe export writes there.
_ALSO_OWN = ("tensorflow.log", "preprocessing.json", "profile.json", "tensorboard", ".manifest.reserve", "export")
_RESULT_FILE = re.compile(r"(evaluation|predictions)-.*\.json")


class PathEscapeError(PipeError, ValueError):
    """A path that would leave the run directory."""


class RunDir(os.PathLike):
    """A run directory: `run_dir / name` for pipe's files, `spec_path(value)` for a spec's."""

    def __init__(self, path, *, chief: bool = True):
        self.path = Path(path)
        self.chief = chief
        self._identity = _identity(self.path)  # the directory itself, not what its path names later

    @classmethod
    def create(cls, spec, is_chief: bool = True, now: datetime | None = None) -> "RunDir":
        """A new run directory for `spec` (a temporary one on a non-chief worker).

        Raises:
            SpecError: located at outputs.dir (or name) when the directory cannot be made:
                a file in the way, no permission, a read-only disk.
        """
        if not is_chief:
            return cls(tempfile.mkdtemp(prefix=f"pipe-{spec.sections.name}-"), chief=False)
        nested = outputs_dir_errors(spec)
        if nested:  # refused before anything is written there
            raise nested[0]
        try:
            return cls(create_run_dir(spec, is_chief, now))
        except OSError as e:
            where = ("outputs", "dir") if spec.sections.outputs.declares("dir") else ("name",)
            reason = e.strerror or type(e).__name__
            if isinstance(e, (FileExistsError, NotADirectoryError)):
                reason = "a file is in the way, not a directory"
            target = e.filename if e.filename is not None else "the run directory"
            raise spec.error(where, f"cannot create the run directory: {target}: {reason}") from None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name) -> Path:
        """A path of pipe's own inside the run directory."""
        return self._confined(self.path / name, name)

    def spec_path(self, value: str, *, make_parent: bool = True) -> Path:
        """The path a spec names (e.g. a callback's `filename`), inside the run directory.

        Raises:
            PathEscapeError: `value` is absolute, climbs out, is one of pipe's own files,
                or leaves through a symlink.
        """
        problem = escape_problem(value)
        if problem:
            raise PathEscapeError(escape_message(value, problem))
        target = self._confined(self.path / value, value)
        if make_parent:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._confined(target, value)  # a symlink may have been in the way
        return target

    def formatted_path(self, path) -> Path:
        """A path Keras formatted from a spec's template (`{epoch}` filled in), checked at its write.

        Raises:
            WriteError: the formatted path leaves the run directory, replaces one of pipe's
                own files, or the run directory was replaced since the run began.
        """
        text = str(path)
        prefix = str(self.path).rstrip(os.sep) + os.sep
        relative = text[len(prefix):] if text.startswith(prefix) else None
        problem = "leaves the run directory" if relative is None else escape_problem(relative)
        if problem:
            raise WriteError(text, f"the formatted path {escape_message(relative or text, problem)}")
        try:
            return self._confined(Path(text), relative)
        except PathEscapeError as e:
            raise WriteError(text, str(e)) from None

    def check_identity(self) -> None:
        """Raise WriteError when the run directory's path no longer names the directory made
        for this run (moved away and replaced by a symlink or another directory)."""
        if self._identity is not None and _identity(self.path) != self._identity:
            raise WriteError(self.path, "the run directory was replaced while the run wrote to it (it is now "
                             "a symlink, another directory or gone); pipe stopped writing there")

    def _confined(self, target: Path, value) -> Path:
        self.check_identity()
        root = self.path.resolve()
        if os.path.isabs(str(value)) or ".." in Path(value).parts:
            raise PathEscapeError(escape_message(str(value), "leaves the run directory"))
        resolved = target.resolve()
        if resolved != root and root not in resolved.parents:
            raise PathEscapeError(escape_message(str(value), "leaves the run directory through a symlink"))
        return target

    def write_error_log(self, error: BaseException) -> Path | None:
        """The full traceback of a failed run, as `error.log`; None when it cannot be written."""
        try:
            log = self / ERROR_LOG
            write_text(log, "".join(traceback.format_exception(error)))
        except OSError:
            return None
        return log

    def replaced(self) -> bool:
        """Whether the run directory's path no longer names this run's directory."""
        return self._identity is not None and _identity(self.path) != self._identity

    def discard(self) -> None:
        """Remove a non-chief worker's temporary directory; keep the chief's."""
        if not self.chief:
            shutil.rmtree(self.path, ignore_errors=True)


def _identity(path: Path):
    """(device, inode) of the directory at `path` itself (a symlink is not followed); None if none."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISDIR(found.st_mode) else None


def run_file_problem(path, allowed: tuple = ()) -> str | None:
    """Why writing `path` (a command's output file) would replace a file of a run directory
    that pipe wrote (history.csv, manifest.json, ...), or None when it would not.

    `allowed`: top-level names of the run directory the command may write in (`export`)."""
    target = Path(path).absolute()
    try:
        parent = target.parent.resolve()
    except (OSError, RuntimeError):
        return None
    for directory in (parent, *parent.parents):
        if (directory / "manifest.json").is_file() and (directory / "spec.yaml").is_file():
            first = (parent / target.name).relative_to(directory).parts[0]
            if first in allowed:
                return None
            if first in RUN_DIR_OWN or first in _ALSO_OWN or _RESULT_FILE.fullmatch(first):
                return (f"would replace {first!r} of the run directory {directory}, which pipe wrote: "
                        "write the output to another file")
            return None
    return None


def enclosing_run_dir(path) -> Path | None:
    """The run directory (a folder with pipe's manifest.json and spec.yaml) that `path` is in or is."""
    try:
        target = Path(path).expanduser().absolute().resolve()
    except (OSError, RuntimeError):
        return None
    for directory in (target, *target.parents):
        if (directory / "manifest.json").is_file() and (directory / "spec.yaml").is_file():
            return directory
    return None


def outputs_dir_errors(spec) -> list:
    """outputs.dir (default `runs`) inside an existing run directory, located: a run there would
    mix its files with another run's (and `pipe runs`, resume, export would find the wrong one)."""
    outputs = spec.sections.outputs
    value = outputs.dir
    if not isinstance(value, str) or not value.strip():
        return []
    run = enclosing_run_dir(value)
    if run is None:
        return []
    where = ("outputs", "dir") if outputs.declares("dir") else ("name",)
    return [spec.error(where, f"outputs.dir {value!r} is inside the run directory {run}: write runs to a "
                       "folder outside any run directory", at_value=outputs.declares("dir"))]
