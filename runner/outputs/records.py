"""Reading finished run directories back: manifest, metrics, the resolved spec. No TensorFlow.

`pipe evaluate`, `pipe predict`, `pipe runs` and `pipe compare` all start from a run
directory; this module is what they know about its files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from runner.errors import EXIT_INVALID, PipeError
from runner.outputs.files import write_json
from runner.outputs.status import checked_status
from runner.spec import load_spec


class RunFileError(PipeError, ValueError):
    """A run's file that is not pipe's to read: a symbolic link, too large, or not JSON."""

    exit_code = EXIT_INVALID


class NotARunDirectory(PipeError, FileNotFoundError):
    """A folder given as a run directory that holds no manifest.json."""

    exit_code = EXIT_INVALID


def own_file(path: Path) -> Path:
    """`path`, refused when it is a symbolic link: a run's files are its own, never links
    (a link could show any file on the machine as a diff or a message)."""
    if path.is_symlink():
        raise RunFileError(f"{path}: a symbolic link, not a file the run wrote; not read")
    return path


@dataclass
class RunRecord:
    """One run directory as written by `pipe run`."""

    path: Path
    manifest: dict
    metrics: dict

    @property
    def name(self) -> str:
        name = self.manifest.get("name")
        return name if isinstance(name, str) and name else self.path.parent.name

    @property
    def status(self) -> str:
        """As the manifest says, but `killed` for a `running` run whose process is gone."""
        if not isinstance(self.manifest.get("status"), str):
            return "unknown"
        status = checked_status(self.manifest).status
        return status if isinstance(status, str) else "unknown"

    @property
    def epochs(self) -> int | None:
        """The epochs trained: at the end, or so far (the last heartbeat's) for a run that did not end."""
        epochs = self.manifest.get("epochs_run", self.manifest.get("epochs_done"))
        return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None

    @property
    def start_time(self) -> str:
        start = self.manifest.get("start_time")
        return start if isinstance(start, str) else ""


def is_run_dir(path) -> bool:
    return (Path(path) / "manifest.json").is_file()


def read_run(path) -> RunRecord:
    """The manifest and metrics of a run directory (metrics empty when the run wrote none).

    Raises:
        FileNotFoundError: `path` is not a run directory (no manifest.json).
    """
    path = Path(path)
    if not is_run_dir(path):
        raise NotARunDirectory(f"{path}: not a run directory (no manifest.json)")
    manifest = _read_json(path / "manifest.json")
    if not isinstance(manifest, dict):
        raise RunFileError(f"{path / 'manifest.json'}: not a JSON object")
    own_file(path / "metrics.json")
    try:
        metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    except ValueError:
        metrics = {}  # the manifest still tells the run; its metrics are not shown
    metrics = {k: v for k, v in metrics.items() if isinstance(v, dict)} if isinstance(metrics, dict) else {}
    return RunRecord(path, manifest, metrics)


def find_runs(base, skipped=None) -> list[RunRecord]:
    """Every run directory at or under `base` (runs/<name>/<stamp>), newest first.

    A directory whose manifest cannot be read (half-written, foreign, too large, not an
    object) is left out, and `(path, reason)` appended to `skipped` when given: one bad
    directory never hides the others.
    """
    base = Path(base)
    found = [base] if is_run_dir(base) else sorted(p.parent for p in base.rglob("manifest.json"))
    records = []
    for path in found:
        try:
            records.append(read_run(path))
        except (OSError, ValueError) as e:  # a half-written or foreign manifest: not a run to list
            if skipped is not None:
                skipped.append((path, str(e)))
    return sorted(records, key=lambda r: (r.start_time, str(r.path)), reverse=True)


def load_run_spec(run_dir, overrides=()):
    """The run's resolved spec (spec.yaml), `--set` overrides applied, paths as the run saw them.

    Relative input paths in a spec mean "next to the spec file": the run directory's copy
    keeps meaning the original's folder (recorded in the manifest as `spec_dir`).
    """
    run_dir = Path(run_dir)
    spec_file = own_file(run_dir / "spec.yaml")
    if spec_file.is_file() and spec_file.stat().st_size > MAX_JSON_BYTES:
        raise RunFileError(f"{spec_file}: {spec_file.stat().st_size} bytes, more than a run's spec holds "
                           f"({MAX_JSON_BYTES}); not read")
    spec = load_spec(spec_file, overrides)
    manifest = _read_json(run_dir / "manifest.json") if is_run_dir(run_dir) else {}
    spec.root = Path(manifest["spec_dir"]) if manifest.get("spec_dir") else _spec_dir(manifest, run_dir)
    return spec


def _spec_dir(manifest: dict, run_dir: Path) -> Path:
    """Runs from before `spec_dir` was recorded: the spec file's folder if it can be found."""
    spec_file = Path(manifest.get("spec_file") or "")
    if spec_file.is_absolute():
        return spec_file.parent
    if manifest.get("spec_file") and spec_file.is_file():
        return spec_file.resolve().parent
    return run_dir.resolve()


def new_result_file(run_dir, prefix: str, suffix: str = ".json", now: datetime | None = None) -> Path:
    """A new, claimed file `<prefix>-<YYYYmmdd-HHMMSS>[-N]<suffix>` in the run directory.

    Never overwrites: the name is claimed with an exclusive create, adding -2, -3, ...
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 10_000):
        path = Path(run_dir) / f"{prefix}-{stamp}{'' if attempt == 1 else f'-{attempt}'}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"no free file name {prefix}-{stamp}-N{suffix} in {run_dir}")


def write_result(path: Path, value) -> None:
    """Fill a file claimed by `new_result_file` (atomically, like every run file)."""
    write_json(path, value)


MAX_JSON_BYTES = 16 << 20  # a run's manifest or metrics: kilobytes; more is not pipe's


def _read_json(path: Path):
    """A run file's JSON. Raises ValueError for one too large to be pipe's, or not JSON."""
    path = own_file(Path(path))
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise RunFileError(f"{path}: {size} bytes, more than a run's file holds ({MAX_JSON_BYTES}); not read")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise RunFileError(f"{path}: nested too deeply to be a run's file") from None
    except UnicodeDecodeError as e:
        raise RunFileError(f"{path}: not UTF-8 ({e.reason})") from None
    except json.JSONDecodeError as e:  # the position, never the text
        raise RunFileError(f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
