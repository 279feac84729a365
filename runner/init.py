"""`pipe init`: a commented starter spec from the templates shipped in `runner/templates/`.

Never overwrites: an existing spec path is an error, an existing companion file (a
template's sample data) is kept. No TensorFlow.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

# Files a template needs next to it, copied along with it (its sample data).
_COMPANIONS = {"tabular-csv": ("tabular-sample.csv",)}


@dataclass
class Written:
    spec: Path
    companions: list[Path] = field(default_factory=list)  # written now
    kept: list[Path] = field(default_factory=list)  # already there, left as they were


def template_names() -> list[str]:
    return sorted(p.name[:-5] for p in _templates().iterdir() if p.name.endswith(".yaml"))


def template_summary(name: str) -> str:
    """The template's first comment line, without 'A starter spec: '."""
    first = _template(name).read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    return first.removeprefix("A starter spec: ").rstrip(".")


def write_template(name: str, path=None) -> Written:
    """Write template `name` to `path` (a file, or a folder for `<name>.yaml`; default: here).

    Raises:
        FileExistsError: the spec file exists already.
        KeyError: no template of that name.
    """
    if name not in template_names():
        raise KeyError(name)
    target = Path(path) if path is not None else Path(f"{name}.yaml")
    if target.is_dir() or target.suffix.lower() not in (".yaml", ".yml"):  # a folder, maybe new
        target = target / f"{name}.yaml"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # a file where a folder of the path should be: not the spec existing
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way, not a folder", e.filename) from None
    _write_new(target, _template(name).read_bytes())
    written = Written(target)
    for companion in _COMPANIONS.get(name, ()):
        destination = target.parent / companion
        try:
            _write_new(destination, (_templates() / companion).read_bytes())
            written.companions.append(destination)
        except FileExistsError:
            written.kept.append(destination)
    return written


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` with `data`; FileExistsError when it exists (exclusive create)."""
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(handle, "wb") as file:
        file.write(data)


def _templates():
    return resources.files("runner") / "templates"


def _template(name: str):
    return _templates() / f"{name}.yaml"
