"""The run directory and atomic writes: a new directory per run, files via temp + rename."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import yaml


def create_run_dir(spec, is_chief: bool = True, now: datetime | None = None) -> Path:
    """A new, empty run directory `<outputs.dir>/<name>/<YYYYmmdd-HHMMSS[-N]>`.

    Never reuses one: created with an exclusive mkdir, adding -2, -3, ... on collision.
    A non-chief worker of a multi-worker run gets a temporary directory instead (its
    outputs are discarded; see `discard_run_dir`).
    """
    if not is_chief:
        return Path(tempfile.mkdtemp(prefix=f"pipe-{spec.doc['name']}-"))
    outputs = spec.doc.get("outputs") or {}
    base = Path(outputs.get("dir", "runs")).expanduser()
    parent = base / spec.doc["name"]
    if spec.doc["name"] in (".", "..") or "/" in spec.doc["name"]:  # the schema refuses these too
        raise spec.error(("name",), f"{spec.doc['name']!r} would leave {base}")
    parent.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 10_000):
        candidate = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"no free run directory under {parent}")


def discard_run_dir(run_dir: Path, is_chief: bool) -> None:
    """Remove a non-chief worker's temporary run directory; keep the chief's."""
    if not is_chief:
        shutil.rmtree(run_dir, ignore_errors=True)


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically: a temp file in the same folder, then os.replace."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; a run is read by the team
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, then restore it
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_spec(run_dir: Path, spec) -> str:
    """Write the resolved spec (after overrides) as spec.yaml; returns its sha256."""
    text = yaml.safe_dump(spec.doc, sort_keys=False, allow_unicode=True)
    write_text(run_dir / "spec.yaml", text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
