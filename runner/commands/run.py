"""`pipe run`: load the spec, train and evaluate it, and say where the run directory is.

What each failure means for the user decides the exit code: the spec (1), the run (3), a
loss that diverged (4), a broken install (5), a signal (128 + its number, with the command
that resumes).
"""

from __future__ import annotations

import gc
import shlex
import traceback

import typer

from runner.commands.reporting import (EXIT_BROKEN_INSTALL, EXIT_DIVERGED, EXIT_INVALID, EXIT_RUN_FAILED,
                                       echo_metrics, fail)
from runner.environment import BrokenInstall, libraries_for, require
from runner.spec import SpecError, load_spec
from runner.spec.errors import printable


def main(files, set_, quiet: bool, resume, debug: bool, profile: bool) -> None:
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
        result = run_spec(spec, quiet=quiet, resume_from=resume, profile=profile)
    except SpecError as e:
        if debug:
            traceback.print_exc()
        typer.echo(str(e), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except BrokenInstall as e:
        typer.echo(f"pipe run: {e}", err=True)
        raise typer.Exit(code=EXIT_BROKEN_INSTALL) from None
    except KeyboardInterrupt as e:  # SIGINT, SIGTERM, SIGHUP: 130, 143, 129
        typer.echo(interrupted(e, files, set_, quiet), err=True)
        raise typer.Exit(code=getattr(e, "exit_code", 130)) from None
    except Exception as e:  # a failure of the run itself, not of the spec: keep the details
        from runner.outputs.failure import describe_failure

        if isinstance(e, OSError) and hasattr(e, "reason"):  # a WriteError: which file, and why
            fail(f"pipe run: {e}", EXIT_RUN_FAILED)
        if hasattr(e, "diverged_message"):
            typer.echo(e.diverged_message(), err=True)
            raise typer.Exit(code=EXIT_DIVERGED) from None
        if debug:
            traceback.print_exc()
        fail(describe_failure(e), EXIT_RUN_FAILED)
    if result.chief:
        typer.echo(f"run directory: {printable(result.run_dir)}")  # one line, whatever outputs.dir holds
    else:
        typer.echo("run directory: none (not the chief worker; the chief writes the run directory)")
    echo_metrics(result.metrics)


def interrupted(error, files, set_, quiet) -> str:
    """What stopped the run, where it is, and the exact command that continues it."""
    name = getattr(error, "signal_name", "SIGINT")
    run_dir, done = getattr(error, "run_dir", None), getattr(error, "epochs_done", None)
    if run_dir is None:
        return f"pipe run: interrupted by {name} before training started; nothing to resume"
    lines = [f"pipe run: interrupted by {name} after {done} epoch{'' if done == 1 else 's'}",
             f"run directory: {printable(run_dir)}"]
    resume_from = getattr(error, "resume_from", None)
    if resume_from is None:
        return "\n".join(lines + ["nothing to resume: no checkpoint was saved"])
    command = ["pipe", "run", *map(str, files)]
    for text in set_ or ():
        command += ["--set", text]
    command += ["--quiet"] if quiet else []
    from runner.outputs.tracking_uri import mask  # a password in a --set URI is not printed

    return "\n".join(lines + ["resume with: " + printable(mask(shlex.join(command + ["--resume", str(resume_from)])))])
