"""The run directory: manifest, spec, history, metrics, model; every file written atomically."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml

import runner


def create_run_dir(spec, is_chief: bool = True, now: datetime | None = None) -> Path:
    """A new, empty run directory `<outputs.dir>/<name>/<YYYYmmdd-HHMMSS[-N]>`.

    Never reuses one: created with an exclusive mkdir, adding -2, -3, ... on collision.
    A non-chief worker of a multi-worker run gets a temporary directory instead (its
    outputs are discarded; see `discard_run_dir`).
    """
    if not is_chief:
        return Path(tempfile.mkdtemp(prefix=f"pipe-{spec.data['name']}-"))
    outputs = spec.data.get("outputs") or {}
    parent = Path(outputs.get("dir", "runs")).expanduser() / spec.data["name"]
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
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value) -> None:
    """Write JSON atomically (indented, keys in insertion order)."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def write_spec(run_dir: Path, spec) -> str:
    """Write the resolved spec (after overrides) as spec.yaml; returns its sha256."""
    text = yaml.safe_dump(spec.data, sort_keys=False, allow_unicode=True)
    write_text(run_dir / "spec.yaml", text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
            "name": spec.data["name"],
            "spec_file": str(spec.file),
            "spec_sha256": spec_sha256,
            "seed": spec.data.get("seed"),
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


def write_history(run_dir: Path, history: dict) -> None:
    """history.json and history.csv (one row per epoch, numbered from 1)."""
    write_json(Path(run_dir) / "history.json", history)
    write_table(Path(run_dir) / "history.csv", "epoch", history, start=1)


def write_trajectories(run_dir: Path, trajectories: dict) -> None:
    """trajectories.json/csv: each scalar variable, initially (epoch 0) and after each epoch."""
    if not trajectories:
        return
    write_json(Path(run_dir) / "trajectories.json", trajectories)
    write_table(Path(run_dir) / "trajectories.csv", "epoch", trajectories, start=0)


def write_table(path: Path, index: str, columns: dict, start: int = 0) -> None:
    """A CSV with an index column and one column per key of `columns` (lists of values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(columns)
    writer.writerow([index, *names])
    rows = max((len(v) for v in columns.values()), default=0)
    for i in range(rows):
        writer.writerow([start + i, *(_cell(columns[n], i) for n in names)])
    write_text(path, buffer.getvalue())


def _cell(values, i):
    return repr(float(values[i])) if i < len(values) else ""


def save_model(model, run_dir: Path, element_spec=None) -> Path:
    """Save the trained model: model.keras (Keras) or saved_model/ (tf.Module).

    A tf.Module gets a `serve` tf.function over the features' signature so the reloaded
    SavedModel predicts (`tf.saved_model.load(path).serve(x)`).
    """
    import keras
    import tensorflow as tf

    run_dir = Path(run_dir)
    if isinstance(model, keras.Model):
        target = run_dir / "model.keras"
        temp = run_dir / f".model-{uuid.uuid4().hex}.keras"
        model.save(temp)
        os.replace(temp, target)
        return target
    target = run_dir / "saved_model"
    temp = run_dir / f".saved_model-{uuid.uuid4().hex}"
    features = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    signature = tf.nest.map_structure(
        lambda s: tf.TensorSpec([None, *s.shape[1:]], s.dtype, name="x"), features
    )
    model.serve = tf.function(lambda x: model(x), input_signature=[signature])
    tf.saved_model.save(model, str(temp), signatures={"serving_default": model.serve})
    os.replace(temp, target)
    return target
