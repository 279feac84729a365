"""`pipe init`: a commented starter spec from the templates shipped in `runner/templates/`.

Never overwrites: an existing spec path is an error, an existing companion file (a
template's sample data) is kept. No TensorFlow.
"""

from __future__ import annotations

import errno
import os
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import typer

from runner.commands.reporting import EXIT_INVALID, EXIT_USAGE, fail
from runner.spec.errors import printable

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


def main(template, path) -> None:
    """`pipe init`: the templates when none is named, else the written files and the next command."""
    if template is None:
        for name in template_names():
            typer.echo(f"{name:22}{template_summary(name)}")
        return
    try:
        written = write_template(template, path)
    except KeyError:
        fail(f"pipe init: unknown template '{template}' (templates: {', '.join(template_names())})", EXIT_USAGE)
    except FileExistsError as e:
        fail(f"pipe init: {e.filename} exists; not overwritten", EXIT_INVALID)
    except OSError as e:  # no such folder, no permission, a read-only disk, a file in the way
        where = e.filename if e.filename is not None else path
        fail(f"pipe init: cannot write {where}: {e.strerror or type(e).__name__}", EXIT_INVALID)
    for file in [written.spec, *written.companions]:
        typer.echo(printable(f"wrote {file}"))
    for file in written.kept:
        typer.echo(printable(f"kept {file} (exists)"))
    name = shell_word(str(written.spec))
    typer.echo(f"next: pipe validate {name} && pipe run {name}")
    if name.startswith("$'"):
        typer.echo("note: the file name holds control characters; $'...' is bash's (and zsh's) quoting "
                   "that names it exactly")


def shell_word(text: str) -> str:
    """`text` as one shell word that names exactly it and prints safely: shlex.quote when it is
    printable, else bash's $'...' with control and format characters as \\x or \\u escapes."""
    if printable(text) == text:
        return shlex.quote(text)
    out = []
    for char in text:
        if char in "\\'":
            out.append("\\" + char)
        elif printable(char) == char:
            out.append(char)
        else:
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x80 else f"\\u{ord(char):04x}" if ord(char) < 0x10000
                       else f"\\U{ord(char):08x}")
    return "$'" + "".join(out) + "'"
