"""`pipe run`: load the spec, train and evaluate it, and say where the run directory is.

What each failure means for the user decides the exit code: the spec (1), the run (3), a
loss that diverged (4), a broken install (5), a signal (128 + its number, with the command
that resumes).
"""

from __future__ import annotations

import gc
import signal

import typer

from runner.commands.reporting import echo_metrics, reporting_errors, require_run_dir
from runner.environment import libraries_for, require
from runner.run import interrupts
from runner.run.interrupts import RunInterrupted
from runner.spec import load_spec
from runner.spec.errors import printable


def main(files, set_, quiet: bool, resume, debug: bool, profile: bool) -> None:
    if resume is not None:  # a folder that is no run: exit 2, as evaluate, predict and export say it
        require_run_dir("run --resume", resume)

    def run_it():
        try:
            spec = load_spec(files, set_ or ())
            if spec.remove("sweep") is not None and not quiet:
                typer.echo("note: pipe run trains the spec's own values and ignores its sweep: section "
                           "(pipe sweep runs the search)", err=True)
            require(*libraries_for(spec.sections.data))
            from runner.run.pipeline import run_spec  # imports TensorFlow

            # What the imports made (TensorFlow's million objects) lives as long as the process:
            # frozen, the collections that tracing's allocations trigger skip it (0.85 s of a
            # 6.9 s Fashion-MNIST run).
            gc.freeze()
            interrupts.resume_command = command_line(files, set_, quiet)  # said if TensorFlow holds a signal
            return run_spec(spec, quiet=quiet, resume_from=resume, profile=profile)
        except KeyboardInterrupt as e:  # SIGINT, SIGTERM, SIGHUP: said with the command that continues the run
            stopped = e if isinstance(e, RunInterrupted) else RunInterrupted(signal.SIGINT)  # before the handlers
            stopped.command_line = command_line(files, set_, quiet)
            raise stopped from None

    from runner.outputs.failure import describe_failure  # a failure of the run itself: where its traceback is

    result = reporting_errors("run", run_it, debug, failed=describe_failure)
    if result.chief:
        typer.echo(f"run directory: {printable(result.run_dir)}")  # one line, whatever outputs.dir holds
    else:
        typer.echo("run directory: none (not the chief worker; the chief writes the run directory)")
    echo_metrics(result.metrics)


def command_line(files, set_, quiet) -> list[str]:
    """`pipe run` as it was called, less what a resume must not repeat (--debug, --profile)."""
    line = ["pipe", "run", *map(str, files)]
    for text in set_ or ():
        line += ["--set", text]
    return line + (["--quiet"] if quiet else [])
