"""How every command ends: exit codes, TensorFlow's own log kept aside, one-paragraph errors.

Each command prints what it made on stdout and what went wrong on stderr, in one located
line or paragraph, and exits with a code a script can test. Which code is the error's own
(`runner.errors`): `reporting_errors` maps them by type, in one place.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
import traceback

import typer

from runner.console import TensorFlowLog
from runner.errors import (EXIT_BROKEN_INSTALL, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_INVALID,  # noqa: F401
                           EXIT_RUN_FAILED, EXIT_USAGE, PipeError, PipeInterrupted)
from runner.spec.errors import printable


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
        except BrokenPipeError:  # stdout's reader left: not a crash, nothing more to say (see `exit_with`)
            log.stop(show=verbose)
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


def reporting_errors(command: str, work, debug: bool = False, failed=None):
    """`work()`, and how an error ends `pipe <command>`: the one place errors become exit codes.

    A PipeError (or a signal) prints its own message and exits with its own code; a file
    that is not there is the user's to fix (exit 1); anything else is one paragraph, exit 3:
    `failed(error)` when given (pipe run names its error.log), else `pipe <command>: failed:
    <Type>: <message>`. With `debug`, an error's Python traceback comes first.
    """
    try:
        return work()
    except typer.Exit:  # the command already said why (click's Exit is an Exception)
        raise
    except BrokenPipeError:  # stdout's reader left (`| head`): not a failure, see `exit_with`
        raise
    except KeyboardInterrupt as e:  # a signal (a bare Ctrl-C too): not a crash, no traceback
        stopped = e if isinstance(e, PipeInterrupted) else PipeInterrupted()
        _end(stopped.report(command), stopped.exit_code)
    except PipeError as e:  # its report is escaped already, and may be several lines
        _end(e.report(command), e.exit_code, debug)
    except FileNotFoundError as e:
        _end(printable(f"pipe {command}: {e}"), EXIT_INVALID, debug)
    except Exception as e:
        from runner.outputs.failure import summarise_error

        message = failed(e) if failed else f"pipe {command}: failed: {summarise_error(e)}"
        _end(printable(message), EXIT_RUN_FAILED, debug)


def _end(message: str, code: int, debug: bool = False):
    if debug:
        traceback.print_exc()
    typer.echo(message, err=True)
    raise typer.Exit(code=code) from None


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
    every file of the run is written, flushed and closed when a command returns).

    When stdout's reader left early (`pipe runs | head -1`), pipe ends as coreutils and git
    do: quietly, by SIGPIPE (the shell sees 141), not with an exit code that means "invalid spec".
    """
    try:
        # The program is `pipe` however it was started (`python -m runner.cli` too): click
        # would otherwise name it from sys.argv[0] in every usage line and --help page.
        app(prog_name="pipe")
        code = 0
    except SystemExit as e:
        code = e.code
    if _stdout_closed():
        _die_of_sigpipe()
    if not isinstance(code, int):  # None: success; a string: a message for stderr
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    caches = sys.modules.get("runner.data.cache")  # imported only by commands that built data
    if caches is not None:
        caches.release_caches()  # os._exit below skips atexit
    if "tensorflow" in sys.modules:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
    sys.exit(code)


def _stdout_closed() -> bool:
    """Whether writing stdout met a closed pipe: while the command ran (click caught the
    BrokenPipeError and wrapped the streams in its `PacifyFlushWrapper`), or now, as what
    is still buffered is flushed."""
    if type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
        return True
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):  # stdout closed by the caller, or not a stream: nothing to say about it
        return False
    return False


def _die_of_sigpipe() -> None:
    """End by SIGPIPE, with stdout on /dev/null first so that no flush at exit complains
    (Python's advice for a closed pipe). Set only here, at the very end: while a command runs,
    SIGPIPE stays ignored, so a closed socket (an MLflow server) is an error, not a death."""
    import signal

    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    try:
        sys.stderr.flush()
    except OSError:
        pass
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + 13)  # no SIGPIPE on this system (or it was blocked): the same code the shell would show
