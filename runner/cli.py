"""The `pipe` command: validate, run and publish the schema of pipeline specs.

TensorFlow is imported only inside `run`, so `pipe --help`, `pipe validate` and
`pipe schema` stay fast.
"""

from __future__ import annotations

import enum
import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from runner import __version__
from runner.spec.report import render
from runner.spec import SpecError, load_schema, load_spec

EXIT_INVALID = 1  # a spec is invalid (found by validate, or while building a run)
EXIT_RUN_FAILED = 3  # the spec was fine but training or evaluation failed

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Declarative TensorFlow pipelines: validate and run YAML specs.")


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    github = "github"


SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="KEY.PATH=VALUE",
                 help="Override a value (parsed as YAML), e.g. --set train.epochs=3. Repeatable."),
]


def _version(value: bool):
    if value:
        typer.echo(f"pipe {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False):
    """Declarative TensorFlow pipelines: validate and run YAML specs."""


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Spec files to check.")],
    set_: SetOption = None,
    format: Annotated[Format, typer.Option("--format", help="Error output: text, json or github.")] = Format.text,
):
    """Check specs against the schema and the cross-field rules, without TensorFlow."""
    errors = []
    for file in files:
        try:
            load_spec(file, set_ or ())
        except SpecError as e:
            errors += getattr(e, "errors", [e])
    if errors or format is Format.json:
        typer.echo(render(errors, format.value))
    if errors:
        raise typer.Exit(code=EXIT_INVALID)
    if format is Format.text:
        typer.echo(f"{len(files)} spec{'s' if len(files) != 1 else ''} valid", err=True)


@app.command()
def schema():
    """Print the spec's JSON Schema (draft 2020-12)."""
    typer.echo(json.dumps(load_schema(), indent=2))


@app.command()
def run(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The spec to run.")],
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run directory and final metrics.")] = False,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", metavar="RUN_DIR", exists=True, file_okay=False,
        help="Continue from the last checkpoint of this earlier run directory (in a new one).")] = None,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Profile a few training steps into the run's tensorboard/ and say whether "
                          "training is input-bound or compute-bound.")] = False,
):
    """Train and evaluate what a spec declares; write everything to a new run directory."""
    try:
        spec = load_spec(file, set_ or ())
        from runner.run import run_spec  # imports TensorFlow

        result = run_spec(spec, quiet=quiet, resume_from=resume, profile=profile)
    except SpecError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except KeyboardInterrupt:
        typer.echo("pipe run: interrupted", err=True)
        raise typer.Exit(code=130) from None
    except Exception as e:  # a failure of the run itself, not of the spec: keep the details
        traceback.print_exc()
        typer.echo(f"pipe run: the run failed: {type(e).__name__}: {e}", err=True)
        raise typer.Exit(code=EXIT_RUN_FAILED) from None
    if result.chief:
        typer.echo(f"run directory: {result.run_dir}")
    else:
        typer.echo("run directory: none (not the chief worker; the chief writes the run directory)")
    for split, metrics in _metric_lines(result.metrics):
        typer.echo(f"{split}: {metrics}")


def _metric_lines(metrics: dict):
    """`{'test': {'loss': 0.3}}` or `{'loss': 0.3}` as printable lines."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    groups = ({"final": flat} if flat else {}) | nested
    for split, values in groups.items():
        yield split, "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


if __name__ == "__main__":
    sys.exit(app())
