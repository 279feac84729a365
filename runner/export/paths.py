"""Where `pipe export` writes: the run's export/ folder, or a path that takes no one's files.

A target is refused when it exists, lies inside another run directory, inside one of the
run's own files and folders (its export/ is the place), inside an exported model (a file
added there would change the model and its SHA-256), or where nothing can be written; the
folders made for it are removed again when the export fails.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from runner.errors import EXIT_INVALID, PipeError
from runner.outputs.records import is_run_dir
from runner.outputs.run_dir import run_file_problem


class ExportRefused(PipeError):
    """The run or the output path cannot be exported to: one line saying why."""

    exit_code = EXIT_INVALID


def default_path(run_dir: Path, fmt: str, quantize: str | None = None) -> Path:
    suffix = f"-{quantize}" if quantize else ""
    name = {"saved_model": f"saved_model{suffix}", "tflite": f"model{suffix}.tflite", "onnx": f"model{suffix}.onnx"}
    return Path(run_dir) / "export" / name[fmt]


def output_path(run_dir: Path, manifest: dict, fmt, output, quantize) -> Path:
    """Where to write: the default inside the run, or `output` unless taken, in another run,
    inside an exported model, or unwritable."""
    if output is None:
        return default_path(run_dir, fmt, quantize)
    target = Path(output).expanduser().absolute()
    own = run_dir.resolve()
    # The folders above the path as given and as its symlinks lead (a link into another run)
    above = list(dict.fromkeys([*target.parents, *target.resolve().parents]))
    for parent in [target, target.resolve(), *above]:
        if parent.exists() and is_run_dir(parent) and parent.resolve() != own:
            raise ExportRefused(f"{output}: inside another run directory ({parent}); "
                                "export into this run or outside any run")
    exports = {(own / e["path"]).resolve() for e in manifest.get("exports") or [] if isinstance(e, dict)
               and isinstance(e.get("path"), str)}
    for parent in above:  # a file written there would change the model (and its SHA-256)
        if parent.exists() and ((parent / "saved_model.pb").is_file() or parent.resolve() in exports):
            raise ExportRefused(f"{output}: inside the exported model {parent}; export beside it")
    problem = run_file_problem(target, allowed=("export",))
    if problem:  # the run's checkpoints/, saved_model, history.csv ...: pipe's, never replaced
        raise ExportRefused(f"{output}: {problem.replace('write the output to another file', 'export elsewhere')}")
    if target.exists():
        raise ExportRefused(f"{output}: already exists (remove it or choose another path)")
    existing = next(p for p in target.parents if p.exists())
    if not existing.is_dir():
        raise ExportRefused(f"{output}: cannot write there: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportRefused(f"{output}: cannot write there: {existing} is not writable")
    return target


@contextmanager
def writable_parent(target: Path, shown):
    """Make `target`'s missing folders and prove one can write there (root passes os.access on a
    read-only file system); the folders made are removed again if the export fails."""
    made = [p for p in reversed(target.parents) if not p.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=target.parent, prefix=".pipe-export-probe-").close()
    except OSError as e:
        _remove_empty(made)
        raise ExportRefused(f"{shown}: cannot write there: {e.strerror or e}"
                            + (f" ({e.filename})" if e.filename else "")) from None
    try:
        yield
    except BaseException:
        _remove_empty(made)
        raise


def _remove_empty(folders: list) -> None:
    for folder in reversed(folders):  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not made, or no longer empty: left as it is
            pass
