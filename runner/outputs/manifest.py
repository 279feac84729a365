"""manifest.json: what ran, on what, with which data, and how it ended."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import runner
from runner.outputs.files import json_text, overwrite_in_place, padded, write_bytes


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
    """manifest.json: what ran, on what, with which data, and how it ended.

    Written first thing, when the run directory is made, with `status: running`, the pid,
    host and a heartbeat time that each epoch end refreshes: a run killed with SIGKILL
    leaves `running` with a dead pid, which `runner.outputs.status` reads as `killed`. The
    file is padded with spaces so that on a full disk the final status still fits in place.
    """

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
            "reason": None,
            **process_identity(),
            "heartbeat": _now(),
            "epochs_done": 0,
        }
        self._write()

    def update(self, **fields) -> None:
        """Add fields and rewrite the file."""
        self.data.update(fields)
        self._write()

    def heartbeat(self, **fields) -> None:
        """The run is alive: refresh the heartbeat time (at each epoch end), with `fields`."""
        self.update(heartbeat=_now(), **fields)

    def finish(self, status: str, reason: str | None = None, **fields) -> None:
        """Record the end: status (completed, failed, interrupted, diverged), why, end and wall time."""
        self.update(
            status=status,
            reason=reason,
            end_time=_now(),
            wall_time_s=round(time.monotonic() - self._started, 3),
            **fields,
        )

    def _write(self) -> None:
        data = padded(json_text(self.data).encode("utf-8"))
        try:
            write_bytes(self.path, data)
        except OSError:
            if not self.path.is_file():
                raise
            overwrite_in_place(self.path, data.rstrip())  # disk full: keep the record true


def process_identity() -> dict:
    """pid, host and the process's start (so a reused pid is not mistaken for this run)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": process_start(os.getpid())}


def process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, after the parenthesised name


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
