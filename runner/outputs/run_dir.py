"""The run directory's one owner: every path inside it is handed out here, and none escapes.

pipe's own files (`run_dir / "manifest.json"`) and the paths a spec names (callback files,
relative to the run directory) both come from a `RunDir`; a path that is absolute, climbs
out with `..`, or leaves through a symlink is refused, so a spec writes only inside its run
directory. On a non-chief worker of a cluster the RunDir is a temporary directory that is
removed at the end: everything its callbacks write goes there and nowhere else.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from runner.outputs.files import create_run_dir, write_text
from runner.spec.paths import escape_message, escape_problem

ERROR_LOG = "error.log"


class PathEscapeError(ValueError):
    """A path that would leave the run directory."""


class RunDir(os.PathLike):
    """A run directory: `run_dir / name` for pipe's files, `spec_path(value)` for a spec's."""

    def __init__(self, path, *, chief: bool = True):
        self.path = Path(path)
        self.chief = chief

    @classmethod
    def create(cls, spec, is_chief: bool = True, now: datetime | None = None) -> "RunDir":
        """A new run directory for `spec` (a temporary one on a non-chief worker).

        Raises:
            SpecError: located at outputs.dir (or name) when the directory cannot be made:
                a file in the way, no permission, a read-only disk.
        """
        if not is_chief:
            return cls(tempfile.mkdtemp(prefix=f"pipe-{spec.doc['name']}-"), chief=False)
        try:
            return cls(create_run_dir(spec, is_chief, now))
        except OSError as e:
            where = ("outputs", "dir") if "dir" in (spec.doc.get("outputs") or {}) else ("name",)
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

    def _confined(self, target: Path, value) -> Path:
        root = self.path.resolve()
        if os.path.isabs(str(value)) or ".." in Path(value).parts:
            raise PathEscapeError(escape_message(str(value), "leaves the run directory"))
        resolved = target.resolve()
        if resolved != root and root not in resolved.parents:
            raise PathEscapeError(escape_message(str(value), "leaves the run directory through a symlink"))
        return target

    def write_error_log(self, error: BaseException) -> Path | None:
        """The full traceback of a failed run, as `error.log`; None when it cannot be written."""
        log = self.path / ERROR_LOG
        try:
            write_text(log, "".join(traceback.format_exception(error)))
        except OSError:
            return None
        return log

    def discard(self) -> None:
        """Remove a non-chief worker's temporary directory; keep the chief's."""
        if not self.chief:
            shutil.rmtree(self.path, ignore_errors=True)
