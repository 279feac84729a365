"""The run directory and atomic writes: a new directory per run, files via temp + rename."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

from runner.errors import PipeError



def create_run_dir(spec, is_chief: bool = True, now: datetime | None = None) -> Path:
    """A new, empty run directory `<outputs.dir>/<name>/<YYYYmmdd-HHMMSS[-N]>`.

    Never reuses one: created with an exclusive mkdir, adding -2, -3, ... on collision.
    A non-chief worker of a multi-worker run gets a temporary directory instead (its
    outputs are discarded; see `discard_run_dir`).
    """
    name = spec.sections.name
    if not is_chief:
        return Path(tempfile.mkdtemp(prefix=f"pipe-{name}-"))
    base = Path(spec.sections.outputs.dir).expanduser()
    parent = base / name
    if name in (".", "..") or "/" in name:  # the schema refuses these too
        raise spec.error(("name",), f"{name!r} would leave {base}")
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


class WriteError(PipeError, OSError):
    """A file of the run directory could not be written: says which and why, in one line."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot write {path}: {reason}")
        self.filename = str(path)
        self.reason = reason

    def __str__(self) -> str:  # OSError's own would print "[Errno None] None: <file>"
        return f"cannot write {self.filename}: {self.reason}"


def write_failure(path, error: BaseException) -> WriteError:
    """`error` (an OSError or a TensorFlow error) as a WriteError naming `path`."""
    if isinstance(error, WriteError):
        return error
    reason = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
    return WriteError(path, _os_reason(reason) or type(error).__name__)


def _os_reason(text: str) -> str:
    """The system's words in a TensorFlow error: `{{function_node ...}} <file>; No space left on device [Op:SaveV2]`."""
    text = re.sub(r"\{\{[^}]*\}\}", "", text.strip().splitlines()[0] if text.strip() else "")
    text = re.sub(r"\s*\[Op:\w+\]$", "", text).strip()
    return text.rsplit("; ", 1)[-1]


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write a file atomically: a temp file in the same folder, then os.replace.

    `durable` also waits for the bytes to reach the disk (fsync) before the rename, so
    that a power cut cannot leave an empty file; files rewritten at every epoch skip
    that wait (a killed process never leaves a partial file either way).

    Raises:
        WriteError: naming the file and the reason (disk full, read-only, not a folder);
            the temp file is removed, the old file (if any) is left as it was.
    """
    path = Path(path)
    temp = None
    try:
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; a run is read by the team
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as e:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_failure(path, e) from e
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


def write_text(path: Path, text: str, durable: bool = True) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"), durable)


def write_json(path: Path, value, durable: bool = True) -> None:
    """Write strict JSON atomically (indented, keys in insertion order; NaN and ±Infinity as null)."""
    write_text(path, json_text(value), durable)


def json_text(value) -> str:
    """Strict JSON: non-finite floats, which JSON cannot express, become null."""
    return json.dumps(strict(value), indent=2, allow_nan=False) + "\n"


def strict(value):
    """`value` with every NaN or ±Infinity float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


# Temp names: ours (`.<name>.<random>.tmp`, `.model-<hex>.keras`, `.saved_model-<hex>`), and
# TensorFlow's (`ckpt-3_temp/`, `*.tempstate<n>`, `*.tmp<hex>` of its atomic writes).
_PARTIAL = re.compile(r"^\..*\.tmp$|^\.(model|saved_model)-[0-9a-f]{32}|_temp$|\.tempstate\d+$|\.tmp[0-9a-f]{32}$")


def remove_partial_files(run_dir: Path) -> None:
    """Remove what an interrupted write leaves: our `.*.tmp` files, TensorFlow's `*_temp*` folders."""
    for path in sorted(Path(run_dir).rglob("*")):
        if _PARTIAL.search(path.name) and path.exists():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def write_spec(run_dir: Path, spec) -> str:
    """Write the resolved spec (after overrides) as spec.yaml; returns its sha256."""
    text = _spec_text(spec)
    write_text(run_dir / "spec.yaml", text)
    for name, source in source_copies(spec).items():
        (Path(run_dir) / "sources").mkdir(exist_ok=True)
        write_text(Path(run_dir) / name, spec.source_texts[str(source)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source_copies(spec) -> dict:
    """`sources/<n>-<name>` -> source file, for a spec made of several files (extends, layers).

    The run directory keeps a copy of each, as read (comments included), numbered in the
    order they were read: the spec given to pipe first, then what it extends. A name longer
    than 80 bytes is cut, with a hash of the whole: `2-bbbb…bbbb-1a2b3c4d.yaml`.
    """
    sources = getattr(spec, "sources", None) or []
    if len(sources) < 2:
        return {}
    return {f"sources/{i}-{_short_name(Path(source))}": source for i, source in enumerate(sources, 1)}


def _short_name(path: Path, limit: int = 80) -> str:
    """The file's name, or past `limit` characters its start, a hash of the whole and its suffix
    (a file system takes 255 bytes a name; the number in front keeps copies apart)."""
    name = path.name
    if len(name.encode("utf-8")) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = path.stem.encode("utf-8", "surrogateescape")[:limit - 20].decode("utf-8", "ignore")
    return f"{stem}-{digest}{path.suffix[:8]}"


def spec_sha256(spec) -> str:
    """The sha256 of spec.yaml as `write_spec` writes it."""
    return hashlib.sha256(_spec_text(spec).encode("utf-8")).hexdigest()


def _spec_text(spec) -> str:
    return spec.as_yaml()
