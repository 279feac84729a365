"""The `pipe` command line: each command's arguments, handed over to `runner.commands`.

Nothing here imports TensorFlow: `pipe --help`, `pipe validate` and `pipe schema` stay
fast, and a command imports it only once its arguments are known to be usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from runner import commands
from runner.commands.options import (DebugOption, Format, ListFormat, ListFormatOption, RunDirArgument, RunDirsArgument, SetOption,
                                     StorageOption, SweepJoinOption, SweepResumeOption, VerboseOption, VersionOption,
                                     regular_files, spec_files)
from runner.commands.plain_help import PlainCommand
from runner.commands.reporting import exit_with, keeps_tensorflow_log

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
command = app.command(cls=PlainCommand)


@app.callback()
def main(version: VersionOption = False):
    """Declarative TensorFlow pipelines: validate and run YAML specs."""


@command
def validate(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, metavar="FILE", help="Spec files to check.",
                                                callback=regular_files)],
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
    commands.validate.main(files, set_, format, layered, resolved)


@command
def schema(
    keras: Annotated[bool, typer.Option("--keras", help="Fold in the Keras catalog: layer, loss, optimizer, "
                                        "metric and callback names with their arguments, for editors.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="The schema of a part of a spec (a file with extends, "
                                          "or a base): every key optional.")] = False,
):
    """Print the spec's JSON Schema (draft 2020-12).

    Example: pipe schema --keras > pipeline.schema.json
    """
    commands.validate.schema(keras, partial)


@command
@keeps_tensorflow_log
def plan(file: spec_files("plan"), set_: SetOption = None,
         format: Annotated[Format, typer.Option("--format", metavar="FORMAT",
                                                help="Output: text, json or github (errors only).")] = Format.text,
         verbose: VerboseOption = False, debug: DebugOption = False):
    """Build data, model, loss, optimizer and callbacks and run one batch, without training.

    Example: pipe plan specs/fashion_mnist.yaml --format json
    """
    commands.plan.main(file, set_, format, debug)


@command
@keeps_tensorflow_log
def run(
    file: spec_files("run"),
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
    commands.run.main(file, set_, quiet, resume, debug, profile)


@command
def sweep(
    file: Annotated[Optional[list[Path]], typer.Argument(exists=True, dir_okay=False, metavar="SPEC...", callback=regular_files, help=(
        "The spec with a sweep: section; several files are layers of one spec, later over earlier."))] = None,
    set_: SetOption = None,
    workers: Annotated[int, typer.Option("--workers", metavar="N", min=1, help=(
        "Worker processes sharing the study (each imports TensorFlow once and runs trial after trial)."))] = 1,
    storage: StorageOption = None,
    resume: SweepResumeOption = None,
    join: SweepJoinOption = None,
):
    """Search hyperparameters: each trial an ordinary run of the spec with sampled values.

    Writes <outputs.dir>/<name>/sweep-<timestamp>/: a run directory per trial, trials.csv,
    best.yaml (pipe run best.yaml trains the best trial again) and plots.

    Example: pipe sweep specs/sweep_regression.yaml --workers 2
    """
    commands.sweep.main(file, set_, workers, storage, resume, join)


@command
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
    commands.evaluate.main(run_dir, set_, split, debug)


@command
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
    commands.predict.main(run_dir, input, output, batch_size, key, debug)


@command
@keeps_tensorflow_log
def export(
    run_dir: RunDirArgument,
    format: Annotated[str, typer.Option("--format", "-f", metavar="FORMAT", help=(
        "saved_model, tflite or onnx."))],
    # a str, not a Path: a trailing '/' (a folder to write into) is kept
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="PATH", help=(
        "Where to write (default: <run>/export/saved_model, model.tflite or model.onnx); "
        "into a folder that exists or ends in '/', with that default name."))] = None,
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
    commands.export.main(run_dir, format, output, quantize, jit_compile)


@command
def runs(directory: Annotated[Optional[Path], typer.Argument(metavar="DIR", help="Where runs are (default: runs).")] = None,
         format: ListFormatOption = ListFormat.text):
    """List the runs under a directory, newest first: status, start, epochs, wall time, key metrics.

    Example: pipe runs runs/ --format json
    """
    commands.runs.main(directory, format)


@command
@keeps_tensorflow_log  # the model is loaded for MLflow's Keras flavour
def log(
    run_dirs: RunDirsArgument,
    mlflow: Annotated[Optional[str], typer.Option("--mlflow", metavar="URI", help=(
        "The MLflow tracking URI (default: the spec's outputs.mlflow.tracking_uri, else MLFLOW_TRACKING_URI)."))] = None,
    experiment: Annotated[Optional[str], typer.Option("--experiment", metavar="NAME", help=(
        "The MLflow experiment (default: the spec's outputs.mlflow.experiment, else its name)."))] = None,
):
    """Upload finished runs (or sweeps: a parent run, a child per trial) to MLflow; uploading again changes nothing.

    Example: pipe log runs/mnist/20261128-091500 --mlflow http://127.0.0.1:5000
    """
    commands.log.main(run_dirs, mlflow, experiment)


@command
def compare(run_dirs: Annotated[list[Path], typer.Argument(
        exists=True, file_okay=False, metavar="RUN_DIR", help="Two or more run directories; the first is the baseline.")]):
    """Compare runs: a diff of their resolved specs and their metrics side by side.

    Example: pipe compare runs/mnist/20261128-090000 runs/mnist/20261128-091500
    """
    commands.runs.compare(run_dirs)


@command
def init(
    template: Annotated[Optional[str], typer.Argument(metavar="TEMPLATE", help=(
        "regression, module, image-classification or tabular-csv; none lists them."))] = None,
    path: Annotated[Optional[Path], typer.Argument(metavar="PATH", help=(
        "The spec file to write, or a folder for TEMPLATE.yaml (default: ./TEMPLATE.yaml).")) ] = None,
):
    """Write a commented starter spec that validates and runs; never overwrites a file.

    Example: pipe init image-classification specs/my_classifier.yaml
    """
    commands.init.main(template, path)


@command
def doctor(format: ListFormatOption = ListFormat.text):
    """Check the installation: versions against the tested ranges, imports, devices, data.

    Exits 1 when something is broken, with the fix on the same line.

    Example: pipe doctor --format json
    """
    commands.doctor.report(format.value)


def run_pipe() -> None:
    """The `pipe` command (the console script)."""
    exit_with(app)


if __name__ == "__main__":
    run_pipe()
