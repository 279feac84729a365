"""A run's lineage: the runs a resumed run continues, and the key they share for tracking."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def run_key(run_dir) -> str:
    """The key of a run directory in MLflow: that of the first run it resumes, if any, so
    that every resumption of a run continues one MLflow run."""
    run_dir, seen = Path(run_dir), set()
    while True:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        previous = _previous(run_dir, manifest)
        seen.add(run_dir.resolve())
        if previous is None or previous.resolve() in seen:
            break
        run_dir = previous
    identity = "|".join(str(manifest.get(k)) for k in ("name", "host", "pid", "start_time"))
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def chain(run_dir: Path):
    """`run_dir`, then the run it resumes, and so on back to the first."""
    seen = set()
    while run_dir is not None and run_dir.resolve() not in seen:
        seen.add(run_dir.resolve())
        yield run_dir
        try:
            run_dir = _previous(run_dir, json.loads((run_dir / "manifest.json").read_text()))
        except (OSError, ValueError):
            return


def _previous(run_dir: Path, manifest: dict) -> Path | None:
    """The run directory a resumed run continues: as recorded (relative to where pipe ran,
    then beside this one), or None."""
    recorded = manifest.get("resumed_from")
    if not recorded:
        return None
    for candidate in (Path(recorded), run_dir.parent / Path(recorded).name):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None
