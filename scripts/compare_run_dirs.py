"""Compare two run directories: the same files, the same numbers.

    python scripts/compare_run_dirs.py BEFORE AFTER

Used to check that a change of code leaves every example spec's run directory as it was:
the same file names, the same manifest (but for what differs between any two runs: times,
process, paths, command), and the same tables (history, metrics, predictions,
trajectories) to float32 rounding. Binary files (SavedModels, plots) are compared by name
only: their bytes carry timestamps and layout; checkpoints not at all (see `files`). Prints one line per
difference and `same` or `different`; exit status 0 when the same, 1 otherwise.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

# Manifest keys that differ between two runs of the same spec on the same machine.
VOLATILE = {"start_time", "end_time", "wall_time_s", "pid", "host", "pid_start", "heartbeat", "command",
            "spec_dir", "spec_file", "run_dir", "resumed_from", "tensorflow_log", "error_log",
            "seconds_per_epoch", "epoch_seconds",
            # where the run and its spec files were (the resolved spec, hashed, holds outputs.dir),
            # and the saved model file's hash (the .keras archive records when it was written)
            "last_checkpoint", "spec_sources", "spec_files", "spec_sha256", "model_sha256"}
# Keys that are file paths: compared by file name (two checkouts read the same data).
BY_NAME = {"data_files"}
TABLES = (".json", ".csv")
# Files whose whole content is the run's identity, not its numbers.
NAMED_ONLY = {"tensorflow.log", "error.log"}


def close(a, b) -> bool:
    """Equal, or floats equal to float32 rounding."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=2e-6, abs_tol=1e-7)
    return a == b


def differences(a, b, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            if key in VOLATILE:
                continue
            if key in BY_NAME and isinstance(a[key], dict) and isinstance(b.get(key), dict):
                found += differences(*({Path(k).name: v for k, v in d[key].items()} for d in (a, b)),
                                     f"{where}.{key}")
                continue
            if key not in a or key not in b:
                found.append(f"{where}.{key}: only in {'after' if key not in a else 'before'}")
                continue
            found += differences(a[key], b[key], f"{where}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if close(a, b) else [f"{where}: {a!r} before, {b!r} after"]


def read_table(path: Path):
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with path.open(newline="") as f:
        return [[_number(cell) for cell in row] for row in csv.reader(f)]


def _number(cell: str):
    try:
        return float(cell)
    except ValueError:
        return cell


def files(run_dir: Path) -> set[str]:
    """The run's files, but for its checkpoints: which epochs a time-based checkpoint kept
    depends on how fast the machine was (the last epoch's is in the manifest either way)."""
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
            if p.is_file() and p.relative_to(run_dir).parts[0] != "checkpoints"}


def compare(before: Path, after: Path) -> list[str]:
    names_before, names_after = files(before), files(after)
    found = [f"{name}: only before" for name in sorted(names_before - names_after)]
    found += [f"{name}: only after" for name in sorted(names_after - names_before)]
    for name in sorted(names_before & names_after):
        path = Path(name)
        if path.suffix in TABLES and path.name not in NAMED_ONLY and "sources" not in path.parts:
            found += differences(read_table(before / name), read_table(after / name), name)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    before, after = map(Path, argv)
    for run_dir in (before, after):
        if not (run_dir / "manifest.json").is_file():
            print(f"{run_dir}: not a run directory (no manifest.json)", file=sys.stderr)
            return 2
    found = compare(before, after)
    print("\n".join(found + ["different" if found else "same"]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
