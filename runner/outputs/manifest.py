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
from runner.outputs.files import json_text, source_copies, write_bytes
from runner.outputs.tracking_uri import mask


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
    leaves `running` with a dead pid, which `runner.outputs.status` reads as `killed`.
    A small reserve file, `.manifest.reserve`, holds disk space until the run ends, so that
    on a full disk the final status can still be written: it is freed for that last write.
    """

    def __init__(self, run_dir: Path, spec, *, spec_sha256: str, devices: dict, files=()):
        self.path = Path(run_dir) / "manifest.json"
        self._owner = run_dir if hasattr(run_dir, "check_identity") else None  # a RunDir
        self._started = time.monotonic()
        self.data = {
            "name": spec.sections.name,
            "spec_file": str(spec.file),
            "spec_sha256": spec_sha256,
            **_spec_sources(spec),
            "seed": spec.sections.seed,
            "versions": versions(),
            "command": [mask(arg) for arg in sys.argv],  # a password in a URI as ***
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
        self._reserve = self.path.with_name(".manifest.reserve")
        self._write()
        try:
            write_bytes(self._reserve, b"\0" * _RESERVE_BYTES)
        except OSError:
            pass  # no room even for that: the run will fail on its next write anyway

    def update(self, **fields) -> None:
        """Add fields and rewrite the file."""
        self.data.update(fields)
        self._write()

    def heartbeat(self, **fields) -> None:
        """The run is alive: refresh the heartbeat time (at each epoch end), with `fields`."""
        self.data.update(heartbeat=_now(), **fields)
        self._write(durable=False)  # the next heartbeat or the end rewrites it anyway

    def finish(self, status: str, reason: str | None = None, **fields) -> None:
        """Record the end: status (completed, failed, interrupted, diverged), why, end and wall time."""
        self.data.update(
            status=status,
            reason=reason,
            end_time=_now(),
            wall_time_s=round(time.monotonic() - self._started, 3),
            **fields,
        )
        try:
            self._write()
        except OSError:
            if not self._reserve.exists() or self._replaced():
                raise
            self._reserve.unlink()  # disk full: free the reserve for the run's last word
            self._write()
        self._reserve.unlink(missing_ok=True)

    def _write(self, durable: bool = True) -> None:
        if self._owner is not None:
            self._owner.check_identity()  # never through a run directory swapped for a symlink
        write_bytes(self.path, json_text(self.data).encode("utf-8"), durable)


    def _replaced(self) -> bool:
        return self._owner is not None and self._owner.replaced()


_RESERVE_BYTES = 64 * 1024  # several times the manifest, whose temp copy needs room beside it


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


def _spec_sources(spec) -> dict:
    """For a spec made of several files: the files given and where each source's copy is."""
    copies = source_copies(spec)
    if not copies:
        return {}
    return {"spec_files": [str(f) for f in spec.files],
            "spec_sources": {name: str(Path(source).resolve()) for name, source in copies.items()}}
