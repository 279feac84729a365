"""manifest.json: what ran, on what, with which data, and how it ended."""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import runner
from runner.outputs.files import write_json


def fingerprint(path) -> str:
    """sha256 of a file, or of every file under a folder (by relative path and content)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode("utf-8") + b"\0")
            _hash_file(item, digest)
    else:
        _hash_file(path, digest)
    return digest.hexdigest()


def _hash_file(path: Path, digest) -> None:
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)


def versions() -> dict:
    """Versions of pipe and the libraries a run depends on."""
    found = {"pipe": runner.__version__, "python": platform.python_version()}
    for key, distribution in (
        ("tensorflow", "tensorflow"),
        ("keras", "keras"),
        ("tensorflow_datasets", "tensorflow-datasets"),
        ("numpy", "numpy"),
    ):
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = None
    return found


class Manifest:
    """manifest.json: what ran, on what, with which data; rewritten as the run ends."""

    def __init__(self, run_dir: Path, spec, *, spec_sha256: str, devices: dict, files=()):
        self.path = Path(run_dir) / "manifest.json"
        self._started = time.monotonic()
        self.data = {
            "name": spec.doc["name"],
            "spec_file": str(spec.file),
            "spec_sha256": spec_sha256,
            "seed": spec.doc.get("seed"),
            "versions": versions(),
            "command": sys.argv,
            "devices": devices,
            "data_files": {str(p): fingerprint(p) for p in files if Path(p).exists()},
            "start_time": _now(),
            "end_time": None,
            "wall_time_s": None,
            "status": "running",
        }
        write_json(self.path, self.data)

    def update(self, **fields) -> None:
        """Add fields and rewrite the file."""
        self.data.update(fields)
        write_json(self.path, self.data)

    def finish(self, status: str, **fields) -> None:
        """Record the end: status completed/failed, end time and wall time."""
        self.update(
            status=status,
            end_time=_now(),
            wall_time_s=round(time.monotonic() - self._started, 3),
            **fields,
        )


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
