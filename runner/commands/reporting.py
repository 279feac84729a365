"""How every command ends: exit codes, TensorFlow's own log kept aside, one-paragraph errors.

Each command prints what it made on stdout and what went wrong on stderr, in one located
line or paragraph, and exits with a code a script can test.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import traceback

import typer

from runner.console import TensorFlowLog
from runner.outputs.records import RunFileError
from runner.spec import SpecError
from runner.spec.errors import printable

EXIT_INVALID = 1  # a spec is invalid (found by validate, or while building a run)
EXIT_USAGE = 2  # the command line itself is wrong (click's code for usage errors)
EXIT_RUN_FAILED = 3  # the spec was fine but training or evaluation failed
EXIT_DIVERGED = 4  # the training loss became NaN or infinite
EXIT_BROKEN_INSTALL = 5  # TensorFlow, Keras or tfds cannot be imported (pipe doctor says why)


def fail(message: str, code: int):
    """Say `message` on stderr (escaped: it may hold names from files) and exit with `code`."""
    typer.echo(printable(message), err=True)
    raise typer.Exit(code=code)


def keeps_tensorflow_log(command):
    """Run a command that takes `verbose` with TensorFlow's C++ stderr kept in a log.

    The log goes to the run directory's tensorflow.log when there is one; it is printed
    with --verbose, and when TensorFlow itself could not start (a broken install), after
    pipe's own lines. A failed run's own message stays the last line: its paragraph names
    error.log, and the run directory keeps tensorflow.log beside it.
    """
    @functools.wraps(command)
    def with_log(*args, **kwargs):
        log = TensorFlowLog.start()
        verbose = kwargs.get("verbose", False)
        try:
            result = command(*args, **kwargs)
        except typer.Exit as e:
            log.stop(show=verbose or e.exit_code == EXIT_BROKEN_INSTALL)
            raise
        except KeyboardInterrupt:  # Ctrl-C while TensorFlow starts or plan runs: not a crash
            log.stop(show=verbose)
            typer.echo(f"pipe {command.__name__}: interrupted", err=True)
            raise typer.Exit(code=130) from None
        except BaseException:
            log.stop(show=True)
            raise
        log.stop(show=verbose)
        if not verbose:
            _quiet_at_exit()  # TensorFlow's objects log as the interpreter ends
        return result

    return with_log


@functools.cache
def _quiet_at_exit() -> None:
    atexit.register(_quiet_teardown)  # once per process


def _quiet_teardown() -> None:
    """Send descriptor 2 to /dev/null once pipe has said everything.

    Some TensorFlow versions log from destructors (`Local rendezvous is aborting ...`) as
    the interpreter shuts down, after the command's log was closed.
    """
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)


def reporting_errors(command: str, work, debug: bool = False):
    """`work()`, its errors reported as pipe run reports them (located spec errors: exit 1);
    with `debug`, a failure's Python traceback first."""
    try:
        return work()
    except SpecError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except (FileNotFoundError, RunFileError) as e:
        fail(f"pipe {command}: {e}", EXIT_INVALID)
    except KeyboardInterrupt:
        typer.echo(f"pipe {command}: interrupted", err=True)
        raise typer.Exit(code=130) from None
    except Exception as e:  # one paragraph, as pipe run says it; --verbose adds TensorFlow's log
        from runner.outputs.failure import summarise_error

        if debug:
            traceback.print_exc()
        fail(f"pipe {command}: failed: {summarise_error(e)}", EXIT_RUN_FAILED)


def require_run_dir(command: str, run_dir) -> None:
    """A folder that is not a run (no manifest.json) is a usage mistake: exit 2, before TensorFlow."""
    if not (run_dir / "manifest.json").is_file():
        from runner.outputs.run_dir import enclosing_run_dir

        run = enclosing_run_dir(run_dir)  # e.g. the run's export/saved_model given for the run
        inside = f"; it is inside the run directory {run}" if run is not None else ""
        fail(f"pipe {command}: {run_dir}: not a run directory (no manifest.json){inside}", EXIT_USAGE)


def metric_lines(metrics: dict):
    """`{'test': {'loss': 0.3}}` or `{'loss': 0.3}` as (split, printable line) pairs."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    groups = ({"final": flat} if flat else {}) | nested
    for split, values in groups.items():
        yield split, "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def echo_metrics(metrics: dict) -> None:
    for split, line in metric_lines(metrics):
        typer.echo(printable(f"{split}: {line}"))


def exit_with(app) -> None:
    """Run the Typer `app`, then an exit that skips the interpreter's teardown once
    TensorFlow is loaded (its destructors take about a second and do nothing for pipe:
    every file of the run is written, flushed and closed when a command returns)."""
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    if not isinstance(code, int):  # None: success; a string: a message for stderr
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    if "tensorflow" in sys.modules:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)
