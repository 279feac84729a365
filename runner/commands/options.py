"""The options several commands share, declared once for the CLI."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from runner import __version__


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    github = "github"


class ListFormat(str, enum.Enum):
    text = "text"
    json = "json"


ListFormatOption = Annotated[ListFormat, typer.Option("--format", metavar="FORMAT", help="text or json.")]


def regular_files(paths):
    """Spec paths that are regular files: a device or a pipe (/dev/null, /dev/stdin) is a usage
    mistake like a folder (exit 2, click's message), not an invalid spec."""
    for path in paths or ():
        if path.exists() and not path.is_file() and not path.is_dir():
            raise typer.BadParameter(f"file {str(path)!r} is not a regular file (a pipe or a device); a spec is "
                                     "a small YAML file")
    return paths


def spec_files(verb: str):
    return Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, metavar="FILE...", callback=regular_files,
                                                help=f"The spec to {verb}; several files are layers of one spec, "
                                                     "later over earlier.")]


def set_overrides(values):
    """--set values of the form KEY.PATH=VALUE: a malformed one (`--set foo`, `--set =3`) is a
    usage mistake, exit 2 on every command that takes --set, before any spec is read."""
    for text in values or ():
        key, sep, _ = text.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{text!r}: expected KEY.PATH=VALUE, e.g. --set train.epochs=3")
    return values or ()  # never None: Typer 0.16 measures what a callback returns


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="KEY.PATH=VALUE", callback=set_overrides,
                 help="Override a value (parsed as YAML), e.g. --set train.epochs=3. Repeatable."),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print TensorFlow's own log (kept in the run directory's tensorflow.log).")
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Print the Python traceback of a failure.")]
RunDirArgument = Annotated[Path, typer.Argument(exists=True, file_okay=False, metavar="RUN_DIR",
                                                help="A run directory written by pipe run.")]
RunDirsArgument = Annotated[list[Path], typer.Argument(exists=True, file_okay=False, metavar="RUN_DIR",
                                                       help="Run directories written by pipe run.")]


def _version(value: bool):
    if value:
        typer.echo(f"pipe {__version__}")
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                             help="Print the version and exit.")]
StorageOption = Annotated[Optional[str], typer.Option("--storage", metavar="URL", help=(
    "An Optuna storage (sqlite:///..., postgresql://...) that workers on several machines share; "
    "default: study.db in the sweep directory."))]
SweepResumeOption = Annotated[Optional[Path], typer.Option(
    "--resume", metavar="SWEEP_DIR", exists=True, file_okay=False,
    help="Finish this sweep: interrupted trials again, then the rest.")]
SweepJoinOption = Annotated[Optional[Path], typer.Option("--join", metavar="SWEEP_DIR", exists=True, file_okay=False,
                                                         help="Add workers to this running sweep.")]
