"""The `pipe` command: validate, run and publish the schema of pipeline specs.

TensorFlow is imported only inside `run`, so `pipe --help`, `pipe validate` and
`pipe schema` stay fast.
"""

from __future__ import annotations

import atexit
import enum
import functools
import gc
import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from runner import __version__
from runner.environment import BrokenInstall, libraries_for, require
from runner.cli_help import PlainCommand
from runner.console import TensorFlowLog
from runner.spec.errors import printable
from runner.spec.report import render
from runner.spec.adaptation import adaptation_notes
from runner.spec import SpecError, load_schema, load_spec
from runner.outputs.records import RunFileError

EXIT_INVALID = 1  # a spec is invalid (found by validate, or while building a run)
EXIT_RUN_FAILED = 3  # the spec was fine but training or evaluation failed
EXIT_DIVERGED = 4  # the training loss became NaN or infinite
EXIT_BROKEN_INSTALL = 5  # TensorFlow, Keras or tfds cannot be imported (pipe doctor says why)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
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


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print TensorFlow's own log (kept in the run directory's tensorflow.log).")
]


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


def _version(value: bool):
    if value:
        typer.echo(f"pipe {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False):
    """Declarative TensorFlow pipelines: validate and run YAML specs."""


@app.command(cls=PlainCommand)
def validate(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, metavar="FILE", help="Spec files to check.")],
    set_: SetOption = None,
    format: Annotated[Format, typer.Option("--format", metavar="FORMAT", help="Error output: text, json or github.")] = Format.text,
    layered: Annotated[bool, typer.Option("--layered", help=(
        "The FILEs are layers of one spec (later over earlier), as pipe run FILE FILE... merges them; "
        "without it each FILE is a spec."))] = False,
    resolved: Annotated[bool, typer.Option("--resolved", help="Print each spec merged and resolved, every line "
                                           "with the file:line that set it.")] = False,
):
    """Check specs against the schema and the cross-field rules, without TensorFlow.

    Example: pipe validate specs/*.yaml --format github
    """
    errors, texts, notes, resolved_docs = [], [], [], []
    for layers in ([files] if layered else [[file] for file in files]):
        try:
            spec = load_spec(layers, set_ or ())
            notes += adaptation_notes(spec)
            from runner.outputs.run_dir import outputs_dir_errors

            errors += outputs_dir_errors(spec)  # runs would be written inside another run
            if "sweep" in spec.doc:  # every value of the search space keeps the spec valid
                from runner.spec.sweep_space import sweep_errors

                errors += sweep_errors(spec, layers, set_ or ())
        except SpecError as e:
            errors += getattr(e, "errors", [e])
            spec = getattr(e, "spec", None)  # merged, then found wrong: --resolved still shows it
            if spec is None:
                continue
        if resolved:
            from runner.spec.resolved import resolved_text

            texts.append(f"# {' + '.join(map(str, layers))}\n" + resolved_text(spec))
            resolved_docs.append({"files": [str(f) for f in layers], "spec": spec.doc})
    if resolved and format is Format.json:  # one JSON document: the specs and the errors
        from runner.spec.resolved import strict_json

        typer.echo(json.dumps(strict_json({"resolved": resolved_docs, "errors": [e.as_dict() for e in errors]}),
                              indent=2, allow_nan=False))
    else:
        if texts:
            typer.echo("---\n".join(texts), nl=False)
        if errors or format is Format.json:
            typer.echo(render(errors, format.value))
    if errors:
        raise typer.Exit(code=EXIT_INVALID)
    if format is Format.text:
        for note in notes:  # which layers a run adapts on the train split
            typer.echo(note, err=True)
        count = 1 if layered else len(files)
        typer.echo(f"{count} spec{'s' if count != 1 else ''} valid", err=True)


@app.command(cls=PlainCommand)
def schema(
    keras: Annotated[bool, typer.Option("--keras", help="Fold in the Keras catalog: layer, loss, optimizer, "
                                        "metric and callback names with their arguments, for editors.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="The schema of a part of a spec (a file with extends, "
                                          "or a base): every key optional.")] = False,
):
    """Print the spec's JSON Schema (draft 2020-12).

    Example: pipe schema --keras > pipeline.schema.json
    """
    from runner.spec.schema import partial_schema

    if keras:
        from runner.spec.keras_schema import keras_schema

        schema = keras_schema()
    else:
        schema = load_schema()
    typer.echo(json.dumps(partial_schema(schema) if partial else schema, indent=2))


@app.command(cls=PlainCommand)
@keeps_tensorflow_log
def plan(
    file: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, metavar="FILE...", help=(
        "The spec to plan; several files are layers of one spec, later over earlier."))],
    set_: SetOption = None,
    format: Annotated[Format, typer.Option("--format", metavar="FORMAT",
                                           help="Output: text, json or github (errors only).")] = Format.text,
    verbose: VerboseOption = False,
    debug: Annotated[bool, typer.Option("--debug", help="Print the Python traceback of a failure.")] = False,
):
    """Build data, model, loss, optimizer and callbacks and run one batch, without training.

    Example: pipe plan specs/fashion_mnist.yaml --format json
    """
    try:
        spec = load_spec(file, set_ or ())
        from runner.outputs.run_dir import outputs_dir_errors

        nested = outputs_dir_errors(spec)  # runs would be written inside another run
        if nested:
            raise nested[0]
        from runner.plan import plan_spec, render_text  # imports TensorFlow

        result = plan_spec(spec)
    except SpecError as e:
        if debug:
            traceback.print_exc()
        errors = getattr(e, "errors", [e])
        typer.echo(render(errors, format.value) if format is not Format.json
                   else json.dumps({"errors": [x.as_dict() for x in errors]}, indent=2), err=format is Format.text)
        raise typer.Exit(code=EXIT_INVALID) from None
    except Exception as e:  # not the spec's mistake: one paragraph, as pipe run says it
        from runner.failure import summarise_error

        typer.echo(printable(f"pipe plan: failed: {summarise_error(e)}"), err=True)
        raise typer.Exit(code=EXIT_RUN_FAILED) from None
    if format is Format.json:
        from runner.outputs.files import strict

        typer.echo(json.dumps(strict(result.as_dict()), indent=2, default=str, allow_nan=False))
    elif format is Format.text:  # class names, columns and paths come from files: escaped line by line
        typer.echo("\n".join(printable(line) for line in render_text(result, " + ".join(map(str, file))).splitlines()))
    if result.errors and format is not Format.json:
        typer.echo(render(result.errors, format.value), err=format is Format.text)
    if result.errors:
        raise typer.Exit(code=EXIT_INVALID)


@app.command(cls=PlainCommand)
@keeps_tensorflow_log
def run(
    file: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, metavar="FILE...", help=(
        "The spec to run; several files are layers of one spec, later over earlier."))],
    set_: SetOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run directory and final metrics.")] = False,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", metavar="RUN_DIR", exists=True, file_okay=False,
        help="Continue from the last checkpoint of this earlier run directory (in a new one).")] = None,
    verbose: VerboseOption = False,
    debug: Annotated[bool, typer.Option("--debug", help="Print the Python traceback of a failed run.")] = False,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Profile a few training steps into the run's tensorboard/ and say whether "
                          "training is input-bound or compute-bound.")] = False,
):
    """Train and evaluate what a spec declares; write everything to a new run directory.

    Example: pipe run specs/linear_regression.yaml --set train.epochs=3
    """
    try:
        spec = load_spec(file, set_ or ())
        if spec.doc.pop("sweep", None) is not None and not quiet:
            typer.echo("note: pipe run trains the spec's own values and ignores its sweep: section "
                       "(pipe sweep runs the search)", err=True)
        require(*libraries_for(spec.doc))
        from runner.run import run_spec  # imports TensorFlow

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
        typer.echo(_interrupted(e, file, set_, quiet), err=True)
        raise typer.Exit(code=getattr(e, "exit_code", 130)) from None
    except Exception as e:  # a failure of the run itself, not of the spec: keep the details
        from runner.failure import describe_failure

        if isinstance(e, OSError) and hasattr(e, "reason"):  # a WriteError: which file, and why
            typer.echo(printable(f"pipe run: {e}"), err=True)
            raise typer.Exit(code=EXIT_RUN_FAILED) from None
        if hasattr(e, "diverged_message"):
            typer.echo(e.diverged_message(), err=True)
            raise typer.Exit(code=EXIT_DIVERGED) from None
        if debug:
            traceback.print_exc()
        typer.echo(printable(describe_failure(e)), err=True)
        raise typer.Exit(code=EXIT_RUN_FAILED) from None
    if result.chief:
        typer.echo(f"run directory: {printable(result.run_dir)}")  # one line, whatever outputs.dir holds
    else:
        typer.echo("run directory: none (not the chief worker; the chief writes the run directory)")
    for split, metrics in _metric_lines(result.metrics):
        typer.echo(printable(f"{split}: {metrics}"))


@app.command(cls=PlainCommand)
def sweep(
    file: Annotated[Optional[list[Path]], typer.Argument(exists=True, dir_okay=False, metavar="SPEC...", help=(
        "The spec with a sweep: section; several files are layers of one spec, later over earlier."))] = None,
    set_: SetOption = None,
    workers: Annotated[int, typer.Option("--workers", metavar="N", min=1, help=(
        "Worker processes sharing the study (each imports TensorFlow once and runs trial after trial)."))] = 1,
    storage: Annotated[Optional[str], typer.Option("--storage", metavar="URL", help=(
        "An Optuna storage (sqlite:///..., postgresql://...) that workers on several machines share; "
        "default: study.db in the sweep directory."))] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", metavar="SWEEP_DIR", exists=True, file_okay=False,
                                                   help="Finish this sweep: interrupted trials again, then the rest.")] = None,
    join: Annotated[Optional[Path], typer.Option("--join", metavar="SWEEP_DIR", exists=True, file_okay=False,
                                                 help="Add workers to this running sweep.")] = None,
):
    """Search hyperparameters: each trial an ordinary run of the spec with sampled values.

    Writes <outputs.dir>/<name>/sweep-<timestamp>/: a run directory per trial, trials.csv,
    best.yaml (pipe run best.yaml trains the best trial again) and plots.

    Example: pipe sweep specs/sweep_regression.yaml --workers 2
    """
    if sum(x is not None for x in (resume, join)) + bool(file) != 1:
        typer.echo("pipe sweep: give a SPEC, --resume SWEEP_DIR or --join SWEEP_DIR (one of them)", err=True)
        raise typer.Exit(code=2)
    if set_ and not file:
        typer.echo("pipe sweep: --set applies to a new sweep; a resumed or joined sweep keeps its own values", err=True)
        raise typer.Exit(code=2)
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        typer.echo("pipe sweep: Optuna is not installed; install pipe's sweep extra: pip install 'pipe[sweep]'", err=True)
        raise typer.Exit(code=EXIT_BROKEN_INSTALL)
    from runner import sweep as sweeps

    try:
        if resume is not None:
            result = sweeps.resume(resume, workers, echo=typer.echo)
        elif join is not None:
            result = sweeps.join(join, workers, echo=typer.echo)
        else:
            result = sweeps.start(file, set_ or (), workers, storage, echo=typer.echo)
    except SpecError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"pipe sweep: {e}", err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    typer.echo(f"trials: {counts or 'none'}")
    if result.best:
        best = result.best
        params = "  ".join(f"{k}={v}" for k, v in best["params"].items())
        typer.echo(f"best: trial {best['number']}  {best['objective']}={best['value']:.5g}  {params}")
        typer.echo(f"best spec: {result.directory / 'best.yaml'}")
    if result.interrupted:
        typer.echo(f"pipe sweep: interrupted by {result.interrupted}; finish with: "
                   f"{shlex.join(['pipe', 'sweep', '--resume', str(result.directory)])}", err=True)
        raise typer.Exit(code=result.exit_code)


DebugOption = Annotated[bool, typer.Option("--debug", help="Print the Python traceback of a failure.")]

RunDirArgument = Annotated[Path, typer.Argument(exists=True, file_okay=False, metavar="RUN_DIR",
                                                help="A run directory written by pipe run.")]


def _require_run_dir(command: str, run_dir: Path) -> None:
    """A folder that is not a run (no manifest.json) is a usage mistake: exit 2, before TensorFlow."""
    if not (run_dir / "manifest.json").is_file():
        typer.echo(printable(f"pipe {command}: {run_dir}: not a run directory (no manifest.json)"), err=True)
        raise typer.Exit(code=2)


@app.command(cls=PlainCommand)
@keeps_tensorflow_log
def evaluate(
    run_dir: RunDirArgument,
    set_: SetOption = None,
    split: Annotated[Optional[list[str]], typer.Option(
        "--split", metavar="SPLIT", help="Evaluate this split (validation, test or train). Repeatable; "
                                         "default: validation and test.")] = None,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
):
    """Evaluate a run's saved model on its own splits, or on other data given with --set.

    The metrics are printed as pipe run prints them and written to a new
    evaluation-<timestamp>.json in the run directory (never overwriting an earlier one).

    Example: pipe evaluate runs/fashion_mnist/20261128-091500 --set 'data.test.source={npy: {features: x.npy, label: y.npy}}'
    """
    _require_run_dir("evaluate", run_dir)

    def evaluate_it():
        from runner.evaluate import evaluate_run  # imports TensorFlow

        return evaluate_run(run_dir, set_ or (), split)

    evaluation = _reporting_errors("evaluate", evaluate_it, debug)
    for name, metrics in _metric_lines(evaluation.metrics):
        typer.echo(printable(f"{name}: {metrics}"))
    typer.echo(f"evaluation: {printable(evaluation.path)}")


@app.command(cls=PlainCommand)
@keeps_tensorflow_log
def predict(
    run_dir: RunDirArgument,
    input: Annotated[Path, typer.Argument(exists=True, metavar="INPUT", help=(
        "Raw features: .npy, .npz, .csv(.gz), an IDX file (*-ubyte[.gz]), an image or a folder of images."))],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="OUT", help=(
        "Where to write the predictions: .csv, .npy or .jsonl (class and probabilities for classifiers)."))],
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", metavar="N", min=1, help=(
        "Rows per batch (default: the test split's batch size, else 256).")) ] = None,
    key: Annotated[Optional[str], typer.Option("--key", metavar="NAME", help="The array of an .npz input.")] = None,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
):
    """Predict with a run's saved model on a raw file, after the spec's test-split preprocessing.

    Example: pipe predict runs/fashion_mnist/20261128-091500 t10k-images-idx3-ubyte.gz --output predictions.csv
    """
    from runner.outputs.prediction_files import OUTPUT_FORMATS

    if output.suffix.lower() not in OUTPUT_FORMATS:  # usage mistakes: exit 2, before TensorFlow
        typer.echo(printable(f"pipe predict: --output {output}: unknown output format '{output.suffix}' "
                             f"(use {', '.join(OUTPUT_FORMATS)})"), err=True)
        raise typer.Exit(code=2)
    if not output.parent.is_dir():
        typer.echo(printable(f"pipe predict: --output {output}: the folder {output.parent} does not exist"), err=True)
        raise typer.Exit(code=2)
    _require_run_dir("predict", run_dir)

    def predict_it():
        from runner.predict import predict_file  # imports TensorFlow

        return predict_file(run_dir, input, output, batch_size=batch_size, key=key)

    predictions = _reporting_errors("predict", predict_it, debug)
    for note in predictions.notes:
        typer.echo(printable(f"pipe predict: {note}"), err=True)
    typer.echo(f"predictions: {printable(predictions.path)} ({predictions.count} rows)")


@app.command(cls=PlainCommand)
@keeps_tensorflow_log
def export(
    run_dir: RunDirArgument,
    format: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help=(
        "saved_model, tflite or onnx."))],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="PATH", help=(
        "Where to write (default: <run>/export/saved_model, model.tflite or model.onnx)."))] = None,
    quantize: Annotated[Optional[str], typer.Option("--quantize", metavar="float16|int8", help=(
        "tflite only: float16 weights, or int8 calibrated on 200 raw train examples."))] = None,
    jit_compile: Annotated[bool, typer.Option("--jit-compile", help=(
        "saved_model only: the serving function compiled by XLA (faster on CPU; TF Serving needs "
        "--xla_cpu_compilation_enabled)."))] = False,
    verbose: VerboseOption = False,
):
    """Export a completed run's model with its preprocessing: raw inputs in, named outputs out.

    Example: pipe export runs/fashion_mnist/20261128-091500 --format tflite --quantize int8
    """
    usage = (f"unknown format {format!r} (use saved_model, tflite, onnx)"  # runner.export's FORMATS, QUANTIZE
             if format not in ("saved_model", "tflite", "onnx") else
             f"unknown quantization {quantize!r} (use float16, int8)"
             if quantize is not None and quantize not in ("float16", "int8") else None)
    if usage:  # a usage mistake: exit 2, before TensorFlow starts
        typer.echo(printable(f"pipe export: {usage}"), err=True)
        raise typer.Exit(code=2)

    def export_it():
        from runner.export import ExportFailed, ExportRefused, export_run  # imports TensorFlow

        try:
            return export_run(run_dir, format, output, quantize, jit_compile=jit_compile)
        except ExportRefused as e:  # the run or the path, not a failure: said in one line
            return e
        except ExportFailed as e:  # the step that failed and why, one paragraph
            e.failed = True
            return e

    exported = _reporting_errors("export", export_it)
    if not hasattr(exported, "sha256"):
        typer.echo(printable(f"pipe export: {exported}"), err=True)
        raise typer.Exit(code=EXIT_RUN_FAILED if getattr(exported, "failed", False) else EXIT_INVALID)
    typer.echo(f"exported: {exported.path} ({exported.format}, sha256 {exported.sha256})")


class ListFormat(str, enum.Enum):
    text = "text"
    json = "json"


@app.command(cls=PlainCommand)
def runs(
    directory: Annotated[Optional[Path], typer.Argument(metavar="DIR", help="Where runs are (default: runs).")] = None,
    format: Annotated[ListFormat, typer.Option("--format", metavar="FORMAT", help="text or json.")] = ListFormat.text,
):
    """List the runs under a directory, newest first: status, start, epochs, wall time, key metrics.

    Example: pipe runs runs/ --format json
    """
    from runner.runs import format_table, list_runs

    if directory is not None and not directory.exists():  # a path given that is not there: a usage mistake
        typer.echo(printable(f"pipe runs: no such directory: {directory}"), err=True)
        raise typer.Exit(code=2)
    directory = Path("runs") if directory is None else directory

    skipped = []
    rows = list_runs(directory, skipped) if directory.exists() else []
    for path, reason in skipped:  # one unreadable run directory never hides the others
        typer.echo(printable(f"pipe runs: skipped {path}: {reason}"), err=True)
    if format is ListFormat.json:
        from runner.outputs.files import strict

        typer.echo(json.dumps(strict(rows), indent=2, allow_nan=False))  # strict JSON: Infinity as null
    elif rows:
        typer.echo(format_table(rows))
    else:
        typer.echo(printable(f"no runs under {directory}"), err=True)
    from runner.runs import format_sweeps, list_sweeps

    sweeps = list_sweeps(directory) if directory.exists() and format is ListFormat.text else []
    if sweeps:  # each sweep's trials are listed above with the other runs
        typer.echo("\n" + "\n".join(printable(line) for line in format_sweeps(sweeps).splitlines()))


@app.command(cls=PlainCommand)
@keeps_tensorflow_log  # the model is loaded for MLflow's Keras flavour
def log(
    run_dirs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, metavar="RUN_DIR",
                                                   help="Run directories written by pipe run.")],
    mlflow: Annotated[Optional[str], typer.Option("--mlflow", metavar="URI", help=(
        "The MLflow tracking URI (default: the spec's outputs.mlflow.tracking_uri, else MLFLOW_TRACKING_URI)."))] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", metavar="NAME", help=(
        "The MLflow experiment (default: the spec's outputs.mlflow.experiment, else its name)."))] = None,
):
    """Upload finished runs to MLflow; uploading a run again changes nothing.

    Example: pipe log runs/mnist/20261128-091500 --mlflow http://127.0.0.1:5000
    """
    from runner.outputs.tracking import INSTALL_HINT, TrackingError, mlflow_available
    from runner.tracking import describe, log_run

    if not mlflow_available():
        typer.echo(f"pipe log: mlflow is not installed ({INSTALL_HINT})", err=True)
        raise typer.Exit(code=EXIT_BROKEN_INSTALL)
    failed = 0
    for run_dir in run_dirs:
        try:
            typer.echo(printable(f"{run_dir}: {describe(log_run(run_dir, mlflow, experiment))}"))
        except TrackingError as e:
            typer.echo(printable(f"pipe log: {run_dir}: {e}"), err=True)
            failed += 1
    if failed:
        raise typer.Exit(code=EXIT_RUN_FAILED)


@app.command(cls=PlainCommand)
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(exists=True, file_okay=False, metavar="RUN_DIR",
                                                   help="Two or more run directories; the first is the baseline.")],
):
    """Compare runs: a diff of their resolved specs and their metrics side by side.

    Example: pipe compare runs/mnist/20261128-090000 runs/mnist/20261128-091500
    """
    from runner.runs import compare_runs

    if len(run_dirs) < 2:
        typer.echo("pipe compare: give two or more run directories", err=True)
        raise typer.Exit(code=2)
    try:
        typer.echo(compare_runs(run_dirs))
    except (OSError, ValueError) as e:
        typer.echo(printable(f"pipe compare: {e}"), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None


@app.command(cls=PlainCommand)
def init(
    template: Annotated[Optional[str], typer.Argument(metavar="TEMPLATE", help=(
        "regression, module, image-classification or tabular-csv; none lists them."))] = None,
    path: Annotated[Optional[Path], typer.Argument(metavar="PATH", help=(
        "The spec file to write, or a folder for TEMPLATE.yaml (default: ./TEMPLATE.yaml).")) ] = None,
):
    """Write a commented starter spec that validates and runs; never overwrites a file.

    Example: pipe init image-classification specs/my_classifier.yaml
    """
    from runner.init import template_names, template_summary, write_template

    if template is None:
        for name in template_names():
            typer.echo(f"{name:22}{template_summary(name)}")
        return
    try:
        written = write_template(template, path)
    except KeyError:
        typer.echo(printable(f"pipe init: unknown template '{template}' (templates: {', '.join(template_names())})"),
                   err=True)
        raise typer.Exit(code=2) from None
    except FileExistsError as e:
        typer.echo(printable(f"pipe init: {e.filename} exists; not overwritten"), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except OSError as e:  # no such folder, no permission, a read-only disk, a file in the way
        where = e.filename if e.filename is not None else path
        typer.echo(printable(f"pipe init: cannot write {where}: {e.strerror or type(e).__name__}"), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
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


@app.command(cls=PlainCommand)
def doctor(
    format: Annotated[ListFormat, typer.Option("--format", metavar="FORMAT", help="text or json.")] = ListFormat.text,
):
    """Check the installation: versions against the tested ranges, imports, devices, data.

    Exits 1 when something is broken, with the fix on the same line.

    Example: pipe doctor --format json
    """
    from runner.doctor import main as report  # imports TensorFlow when it can

    log = TensorFlowLog.start()  # TensorFlow's start-up lines are not the report
    try:
        code = report(format.value)
    finally:
        log.stop()
    raise typer.Exit(code=code)


def _reporting_errors(command: str, work, debug: bool = False):
    """`work()`, its errors reported as pipe run reports them (located spec errors: exit 1);
    with `debug`, a failure's Python traceback first."""
    try:
        return work()
    except SpecError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except (FileNotFoundError, RunFileError) as e:
        typer.echo(printable(f"pipe {command}: {e}"), err=True)
        raise typer.Exit(code=EXIT_INVALID) from None
    except KeyboardInterrupt:
        typer.echo(f"pipe {command}: interrupted", err=True)
        raise typer.Exit(code=130) from None
    except Exception as e:  # one paragraph, as pipe run says it; --verbose adds TensorFlow's log
        from runner.failure import summarise_error

        if debug:
            traceback.print_exc()
        typer.echo(printable(f"pipe {command}: failed: {summarise_error(e)}"), err=True)
        raise typer.Exit(code=EXIT_RUN_FAILED) from None


def _interrupted(error, file, set_, quiet) -> str:
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
    command = ["pipe", "run", *map(str, file)]
    for text in set_ or ():
        command += ["--set", text]
    command += ["--quiet"] if quiet else []
    from runner.outputs.tracking_uri import mask  # a password in a --set URI is not printed

    return "\n".join(lines + ["resume with: " + printable(mask(shlex.join(command + ["--resume", str(resume_from)])))])


def _metric_lines(metrics: dict):
    """`{'test': {'loss': 0.3}}` or `{'loss': 0.3}` as printable lines."""
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    groups = ({"final": flat} if flat else {}) | nested
    for split, values in groups.items():
        yield split, "  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def run_pipe() -> None:
    """The `pipe` command: the app, then an exit that skips the interpreter's teardown once
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


if __name__ == "__main__":
    run_pipe()
