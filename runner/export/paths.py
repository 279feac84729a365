"""Where `pipe export` writes: the run's export/ folder, or a path that takes no one's files.

The run's export/ folder keeps every export: a second one of the same format is numbered
(model-2.tflite, saved_model-2), as `pipe evaluate` numbers its results. A path given with
--output is the user's own name: it is refused when it exists (pipe never replaces a file
it was not asked to make), and when its extension names another format. An --output that is
a folder (one that exists, or any path ending in '/') is where to write, as `cp x dir/` takes
it: the format's default name goes inside it, numbered past earlier exports there.

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

from runner.errors import EXIT_INVALID, EXIT_USAGE, PipeError
from runner.outputs.records import is_run_dir
from runner.outputs.run_dir import run_file_problem


class ExportRefused(PipeError):
    """The run or the output path cannot be exported to: one line saying why."""

    exit_code = EXIT_INVALID


FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZE = ("float16", "int8")
# The file name each format's file ends with; a SavedModel is a folder.
EXTENSIONS = {"tflite": ".tflite", "onnx": ".onnx"}
_FILE_WORDS = {"tflite": "a TFLite file", "onnx": "an ONNX file"}
_MODEL_FILES = (".tflite", ".onnx", ".keras", ".h5", ".pb")


def request_problem(fmt: str, quantize, jit_compile: bool, output) -> str | None:
    """What is wrong with the command line of an export, or None: a usage mistake (exit 2)."""
    if fmt not in FORMATS:
        return f"unknown format {fmt!r} (use {', '.join(FORMATS)})"
    if quantize is not None and quantize not in QUANTIZE:
        return f"unknown quantization {quantize!r} (use {', '.join(QUANTIZE)})"
    if quantize is not None and fmt != "tflite":
        return f"--quantize applies to tflite, not {fmt}"
    if jit_compile and fmt != "saved_model":
        return f"--jit-compile applies to saved_model, not {fmt}"
    if output is None:
        return None
    suffix = Path(output).suffix.lower()
    wanted = EXTENSIONS.get(fmt)
    if suffix not in _MODEL_FILES or suffix == wanted:  # a name of the user's own (`model`, `m.v2`) is theirs
        return None
    if wanted is not None:
        return (f"--output {output}: {_FILE_WORDS[fmt]}'s name ends in {wanted}, not {suffix} "
                f"(name it {Path(output).stem}{wanted}, or choose the --format of that file)")
    return (f"--output {output}: a SavedModel is a folder, and {suffix} names a file of another format "
            "(give a folder name, or choose the --format of that file)")


class ExportUsage(PipeError):
    """The export's command line contradicts itself (a format and an extension, an option and a format)."""

    exit_code = EXIT_USAGE


def default_path(run_dir: Path, fmt: str, quantize: str | None = None) -> Path:
    """The format's name in the run's export/ folder, as a run's `outputs.export` writes it."""
    suffix = f"-{quantize}" if quantize else ""
    name = {"saved_model": f"saved_model{suffix}", "tflite": f"model{suffix}.tflite", "onnx": f"model{suffix}.onnx"}
    return Path(run_dir) / "export" / name[fmt]


def free_default_path(run_dir: Path, fmt: str, quantize: str | None = None, folder: Path | None = None) -> Path:
    """The default path (in `folder` when given, else the run's export/), or the first
    numbered one free when an earlier export holds it."""
    first = default_path(run_dir, fmt, quantize)
    if folder is not None:
        first = folder / first.name
    stem, extension = (first.name, "") if fmt == "saved_model" else (first.stem, first.suffix)
    for number in range(1, 10_000):
        path = first if number == 1 else first.with_name(f"{stem}-{number}{extension}")
        if not path.exists() and not path.is_symlink():
            return path
    raise ExportRefused(f"{first.parent}: no free name {stem}-N{extension} left; remove earlier exports")


def output_path(run_dir: Path, manifest: dict, fmt, output, quantize) -> Path:
    """Where to write: the default inside the run, or `output` unless taken, in another run,
    inside an exported model, or unwritable."""
    if output is None:
        _check_own_export_folder(run_dir, run_dir / "export")
        return free_default_path(run_dir, fmt, quantize)
    target = Path(output).expanduser().absolute()
    if run_dir.absolute() / "export" in (target, *target.parents):
        _check_own_export_folder(run_dir, output)
    if str(output).endswith(("/", os.sep)) or target.is_dir():  # a folder to write into, as `cp x dir/`
        target = free_default_path(run_dir, fmt, quantize, folder=target)  # messages still name `output`
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
        raise ExportRefused(f"{output}: already exists; pipe export never replaces a file (remove it, "
                            "choose another --output, or leave --output out: the run's export/ numbers its exports)")
    existing = next(p for p in target.parents if p.exists())
    if not existing.is_dir():
        raise ExportRefused(f"{output}: cannot write there: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ExportRefused(f"{output}: cannot write there: {existing} is not writable")
    return target


def _check_own_export_folder(run_dir: Path, shown) -> None:
    """The run's export/ must be the run's own folder: a link (to /tmp, to another run) would
    carry the export out of the run directory."""
    folder = Path(run_dir) / "export"
    inside = not folder.exists() or folder.resolve().parent == Path(run_dir).resolve()
    if folder.is_symlink() or not inside:
        raise ExportRefused(f"{shown}: the run's export/ is a link pipe did not make (to {folder.resolve()}); "
                            "remove it, or export elsewhere with --output")


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
