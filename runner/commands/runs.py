"""`pipe runs` and `pipe compare`: the run directories on disk, as a table and side by side.

Reads only what `pipe run` wrote (manifest.json, metrics.json, spec.yaml): no TensorFlow.
"""

from __future__ import annotations

import difflib
import json
import math
from datetime import datetime
from pathlib import Path

import typer

from runner.commands.reporting import EXIT_INVALID, EXIT_USAGE, fail, require_run_dir
from runner.outputs.files import strict
from runner.outputs.records import MAX_JSON_BYTES, RunRecord, RunFileError, find_runs, own_file, read_run
from runner.spec.errors import printable


def list_runs(base, skipped=None) -> list[dict]:
    """One row per run under `base`, newest first: the facts `pipe runs` shows.

    Directories that cannot be read are left out (and listed in `skipped`, see `find_runs`).
    """
    return [run_row(record) for record in find_runs(base, skipped)]


def run_row(record: RunRecord) -> dict:
    split, metrics = key_metrics(record.metrics)
    wall = record.manifest.get("wall_time_s")
    return {
        "run": str(record.path),
        "name": record.name,
        "start": record.start_time,
        "status": record.status,
        "epochs": record.epochs,
        "wall_time_s": wall if _finite(wall) else None,
        "split": split,
        "metrics": metrics,
    }


def key_metrics(metrics: dict) -> tuple[str | None, dict]:
    """The metrics that say most about a run: test's, else validation's, else train's."""
    for split in ("test", "validation", "train"):
        if isinstance(metrics.get(split), dict) and metrics[split]:
            return split, metrics[split]
    return None, {}


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table (one line per run)."""
    header = ["RUN", "STATUS", "START", "EPOCHS", "WALL", "METRICS"]
    lines = [header]
    for row in rows:
        metrics = "  ".join(f"{printable(k)}={_number(v)}" for k, v in row["metrics"].items())
        lines.append([
            printable(row["run"]), printable(row["status"]), printable(_start(row["start"])),
            "" if row["epochs"] is None else str(row["epochs"]),
            _duration(row["wall_time_s"]),
            f"{printable(row['split'])}: {metrics}" if row["split"] else "",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths)) + "  " + line[-1]
        for line in lines
    ).rstrip()


def list_sweeps(base) -> list[dict]:
    """One row per sweep directory under `base` (its sweep.json), newest first, with its best trial."""
    import json

    rows = []
    for path in sorted(Path(base).rglob("sweep.json"), reverse=True):
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        counts = config.get("counts") or {}
        rows.append({"sweep": str(path.parent), "trials": config.get("trials"), "counts": counts,
                     "objective": config.get("objective"), "direction": config.get("direction"),
                     "best": config.get("best")})
    return rows


def format_sweeps(rows: list[dict]) -> str:
    """The sweeps as an aligned table: trials by state and the best trial."""
    lines = [["SWEEP", "TRIALS", "BEST"]]
    for row in rows:
        done = ", ".join(f"{n} {state}" for state, n in sorted(row["counts"].items())) or "none yet"
        best = row["best"]
        lines.append([row["sweep"], f"{sum(row['counts'].values())}/{row['trials']} ({done})",
                      f"trial {best['number']}: {best['objective']}={_number(best['value'])}  {best['run_dir']}"
                      if best else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(2)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:2], widths)) + "  " + line[2] for line in lines)


def compare_runs(paths) -> str:
    """The resolved specs as a unified diff against the first run, then the metrics side by side."""
    records = [read_run(p) for p in paths]
    first = records[0]
    parts = []
    for other in records[1:]:
        diff = difflib.unified_diff(
            _spec_lines(first), _spec_lines(other),
            fromfile=f"{first.path}/spec.yaml", tofile=f"{other.path}/spec.yaml", lineterm="",
        )
        text = "\n".join(printable(line) for line in diff)
        parts.append(text or f"{printable(first.path)} and {printable(other.path)}: the same spec")
    parts.append(format_metrics(records))
    return "\n\n".join(parts)


def format_metrics(records: list[RunRecord]) -> str:
    """`split.metric` rows, one column per run; later runs also show their difference to the first."""
    keys = []
    for record in records:
        for split, values in record.metrics.items():
            if isinstance(values, dict):
                keys += [(split, name) for name in values if (split, name) not in keys]
    header = ["METRIC"] + [printable(r.path) for r in records]
    table = [header]
    for split, name in keys:
        base = records[0].metrics.get(split, {}).get(name)
        row = [printable(f"{split}.{name}")]
        for i, record in enumerate(records):
            value = record.metrics.get(split, {}).get(name)
            cell = "-" if value is None else _number(value)
            if i and _real(value) and _real(base):
                cell += f" ({value - base:+.4g})"
            row.append(cell)
        table.append(row)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table)


def _spec_lines(record: RunRecord) -> list[str]:
    path = own_file(Path(record.path) / "spec.yaml")
    if not path.is_file():
        return []
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise RunFileError(f"{path}: {size} bytes, more than a run's spec holds ({MAX_JSON_BYTES}); not compared")
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _real(value) and math.isfinite(value)


def _number(value) -> str:
    text = f"{value:.5g}" if isinstance(value, float) else str(value)
    return printable(text if len(text) <= 40 else text[:37] + "...")


def _start(text: str) -> str:
    """ISO start time as `YYYY-mm-dd HH:MM:SS` in the run's own zone."""
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return text or ""


def _duration(seconds) -> str:
    if not _finite(seconds):
        return ""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s"


def main(directory, format) -> None:
    """`pipe runs`: the table (or JSON) of the runs under `directory`, then its sweeps."""
    from runner.commands.options import ListFormat

    if directory is not None and not directory.is_dir():  # a path given that is not a folder: a usage mistake
        fail(f"pipe runs: {'not a directory' if directory.exists() else 'no such directory'}: {directory}",
             EXIT_USAGE)
    directory = Path("runs") if directory is None else directory
    skipped = []
    rows = list_runs(directory, skipped) if directory.exists() else []
    for path, reason in skipped:  # one unreadable run directory never hides the others
        typer.echo(printable(f"pipe runs: skipped {path}: {reason}"), err=True)
    if format is ListFormat.json:
        typer.echo(json.dumps(strict(rows), indent=2, allow_nan=False))  # strict JSON: Infinity as null
    elif rows:
        typer.echo(format_table(rows))
    else:
        typer.echo(printable(f"no runs under {directory}"), err=True)
    sweeps = list_sweeps(directory) if directory.exists() and format is ListFormat.text else []
    if sweeps:  # each sweep's trials are listed above with the other runs
        typer.echo("\n" + "\n".join(printable(line) for line in format_sweeps(sweeps).splitlines()))


def compare(run_dirs) -> None:
    """`pipe compare`: the resolved specs' diff and the metrics side by side, the first run the baseline."""
    if len(run_dirs) < 2:
        fail("pipe compare: give two or more run directories", EXIT_USAGE)
    for run_dir in run_dirs:
        require_run_dir("compare", run_dir)
    try:
        typer.echo(compare_runs(run_dirs))
    except (OSError, ValueError) as e:
        fail(f"pipe compare: {e}", EXIT_INVALID)
