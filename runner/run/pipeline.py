"""`pipe run`: devices, data, model, training, evaluation and the run directory, in order."""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from runner import console
from runner.data import build_datasets
from runner.data.sources.image_folder import located_decode_error
from runner.export.write import check_export_extras, export_finished_run, model_fingerprint
from runner.internals import disable_op_determinism
from runner.run.fused import choose_training
from runner.outputs.failure import note_error_log
from runner.models import build_model, is_keras
from runner.models.adapt import Adapter, save_adapted
from runner.models.adapt import describe as describe_adapted
from runner.models.catalog_check import warn_on_catalog_drift
from runner.models.identifiers import get_optimizer
from runner.outputs import files
from runner.outputs.manifest import Manifest
from runner.outputs.results import write_results
from runner.outputs.run_dir import RunDir
from runner.run.interrupts import deferred, signals_raise
from runner.run.loops import train_custom, train_fit
from runner.run.epoch_end import Progress
from runner.run.resume import prepare_resume
from runner.spec.errors import SpecError
from runner.outputs.tracking_run import mlflow_config, track_finished_run
from runner.spec.metadata import substitute_metadata
from runner.train import checkpoint as checkpoints
from runner.train.class_weight import check_class_weight
from runner.train.devices import check_batch_stages, setup_devices
from runner.train.profiling import StepProfiler, input_seconds_per_batch, verdict
from runner.train.loss_check import check_loss_fits, check_metrics_fit
from runner.train.phases import describe_phases
from runner.train.multi_output import resolve_outputs


@dataclass
class RunResult:
    """The run directory and the final metrics, by split (`{"test": {"loss": ...}}`)."""

    run_dir: Path
    metrics: dict
    chief: bool = True  # False on the other workers of a cluster: their directory is gone


def run_spec(spec, *, quiet: bool = False, resume_from=None, profile: bool = False,
             track: bool = True) -> RunResult:
    """Run a loaded spec end to end and write its run directory.

    Args:
        spec: a `runner.spec.Spec` (overrides already applied).
        quiet: no progress bars, report lines or device summary.
        resume_from: an earlier run directory of this spec: training restarts from its
            last checkpoint (model, optimizer, epoch). The new run still gets its own
            directory; history and trajectories continue the old.
        profile: time a few training steps, trace some into the run's tensorboard/ and
            say whether training is input-bound or compute-bound (profile.json).
        track: upload the run to its `outputs.mlflow` as it ends (a sweep's worker does it
            itself, under the sweep's MLflow run).

    Raises:
        SpecError: a mistake in the spec, found while building (located), or a run that
            cannot be resumed.
        RunInterrupted: SIGINT, SIGTERM or SIGHUP; the manifest says `interrupted`.
        TrainingDiverged: a NaN or infinite loss; the manifest says `diverged`.
        WriteError: a file of the run directory could not be written (which, and why).
    """
    with signals_raise():
        return _run_spec(spec, quiet, resume_from, profile, track)


def _run_spec(spec, quiet, resume_from, profile, track) -> RunResult:
    if profile and spec.doc["train"].get("engine") == "fused":
        raise spec.error(("train", "engine"), "pipe run --profile times the steps of the tf.data loops, which "
                         "the fused engine does not run: set train.engine to keras or auto to profile", at_value=True)
    setup = setup_devices(spec)  # before any other TensorFlow op
    check_batch_stages(spec, setup)
    if not quiet:
        print(setup.summary, flush=True)
    warn_on_catalog_drift()
    check_export_extras(spec)  # outputs.export: a missing extra is said before training, not after
    train_config = spec.doc["train"]
    seed = spec.doc.get("seed")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    _set_op_determinism(train_config.get("deterministic", False))
    if train_config.get("steps_per_epoch") is None:
        console.hide_known_noise()  # each epoch reads its finite dataset to the end, by design

    datasets = build_datasets(spec)
    validated = datasets.validated_split(spec)
    validation = getattr(datasets, validated) if validated else None
    check_class_weight(spec, datasets.info)
    loop = train_config.get("loop", "fit")
    model_config = substitute_metadata(spec.doc["model"], datasets.info, spec, ("model",))
    with setup.strategy.scope():
        adapter = Adapter(model_config, spec, datasets.train, resume_from=resume_from)
        model = build_model(model_config, spec, seed=seed or 0, adapter=adapter)
        adapted = adapter.records
        loss, metrics = resolve_outputs(train_config, spec, model, datasets.train.element_spec)
        optimizer = get_optimizer(train_config["optimizer"], spec)
        loss_object = check_loss_fits(loss, model, datasets.train.element_spec, spec)
        check_metrics_fit(metrics, model, datasets.train.element_spec, spec)
    _keras_xla_verdict(setup, model, quiet, deterministic=train_config.get("deterministic", False))
    phases = describe_phases(model, spec)  # each phase's layers and optimizer, checked before the run starts
    if not is_keras(model) and train_config.get("callbacks"):
        raise spec.error(("train", "callbacks"), "callbacks drive Keras models; a module model takes none")

    if loop == "fit" and setup.strategy_name == "multi_worker_mirrored":
        # Keras 3 Model.fit does not train under MultiWorkerMirroredStrategy
        # (keras-team/keras#20585); the custom loop runs the same steps there.
        loop = "custom"
        if not quiet:
            print("loop: custom (Keras fit does not run under multi_worker_mirrored)", flush=True)

    previous = prepare_resume(spec, resume_from) if resume_from is not None else None
    if previous is not None:
        checkpoints.check_model_fits(model, previous)  # refused before a run directory exists
    run_dir = RunDir.create(spec, setup.is_chief)
    console.move_log_to(run_dir)  # TensorFlow's C++ log, when the command keeps one
    # The manifest first: whatever fails after this (a full disk included), it records it.
    manifest = Manifest(run_dir, spec, spec_sha256=files.spec_sha256(spec), devices=setup.manifest,
                        files=datasets.files)
    progress = Progress(run_dir, manifest, previous, validated=validated or "validation")
    profiler = StepProfiler(run_dir / "tensorboard") if profile else None
    train = functools.partial(train_fit if loop == "fit" else train_custom, profiler=profiler)
    try:
        files.write_spec(run_dir, spec)
        if adapted:  # preprocessing layers adapted on the train split (runner.models.adapt)
            manifest.update(adapted=adapted)
            save_adapted(model, adapted, run_dir)
            if not quiet:
                print("\n".join(describe_adapted(adapted)), flush=True)
        manifest.update(loop=loop)
        if phases:
            manifest.update(phases=[{k: v for k, v in p.items() if k != "line"} for p in phases])
        # For evaluate/predict: what the spec's relative paths meant, and the data's metadata.
        manifest.update(spec_dir=str(spec.resolve_path(".")), data_info=datasets.info)
        if previous is not None:
            manifest.update(resumed_from=str(previous.run_dir), resumed_checkpoint=previous.checkpoint,
                            resumed_at_epoch=previous.epoch, epochs_done=previous.epoch)
        # the fused engine, or tf.data (always under --profile: it times tf.data steps)
        choice = choose_training(spec, setup, datasets, loop, run_dir, profiling=profile)
        manifest.update(engine=choice.engine.name, engine_reason=choice.engine.reason)
        if not quiet and "engine" in train_config:
            print(choice.engine.line, flush=True)
        train = choice.train or train
        try:
            result, evaluation = train(spec, setup, datasets, validation, model, loss_object, optimizer,
                                       metrics, run_dir, quiet, progress)
        except tf.errors.InvalidArgumentError as e:
            raise _loss_error(spec, loss_object, e) or _xla_error(spec, setup, e) or e
        if profiler is not None:
            _report_profile(profiler, datasets.train, run_dir)
        with deferred():
            write_results(spec, datasets, model, result, evaluation, run_dir)
            if setup.is_chief:  # what pipe export checks the model file against
                manifest.update(**model_fingerprint(run_dir.path))
            if (spec.doc.get("outputs") or {}).get("export") and setup.is_chief:
                manifest.update(exports=export_finished_run(spec, run_dir.path, manifest.data, model))
            manifest.finish("completed", epochs_run=result.epochs_run)
    except BaseException as failure:
        e = failure
        if isinstance(e, tf.errors.OpError):  # an image that cannot be decoded: named, located (exit 1)
            e = located_decode_error(spec, e) or e
        if manifest.data["status"] == "completed" and isinstance(e, KeyboardInterrupt):
            pass  # the signal came while the finished run wrote its last files: it is complete
        else:
            if isinstance(e, Exception) and not isinstance(e, SpecError):  # keep a failure's traceback
                note_error_log(e, run_dir)
            _raise_ended(progress, e)
    finally:
        if setup.is_chief and not run_dir.replaced():
            files.remove_partial_files(run_dir)
        files.discard_run_dir(run_dir, setup.is_chief)
        if track and setup.is_chief and mlflow_config(spec.doc) is not None:
            track_finished_run(spec.doc, run_dir.path, quiet)  # after every file; never raises
    return RunResult(run_dir=run_dir.path, metrics=evaluation, chief=setup.is_chief)


def _keras_xla_verdict(setup, model, quiet, deterministic=False) -> None:
    """jit_compile as Keras decides it for this model, for every loop and the manifest:
    Keras turns XLA off (and warns) for layers it cannot compile, or under op determinism."""
    if not (setup.jit_compile and is_keras(model)):
        return
    with warnings.catch_warnings(record=True):  # said once, below
        model.jit_compile = True  # the setter is Keras's check
    if not model.jit_compile:
        setup.jit_compile = False
        setup.manifest["xla"] = False
        if not quiet:
            why = ("train.deterministic: Keras does not compile with XLA under op determinism" if deterministic
                   else "Keras cannot compile this model's layers with XLA")
            print(f"xla: off ({why})", flush=True)


def _report_profile(profiler, train, run_dir) -> None:
    """The verdict of `--profile` (input- or compute-bound), printed and kept in profile.json."""
    found = verdict(profiler.step_seconds, input_seconds_per_batch(train.repeat()))
    found.update(timed_steps=len(profiler.step_seconds), profiled_steps=profiler.profiled_steps)
    found["trace"] = str(run_dir / "tensorboard") if profiler.profiled_steps else None
    if not profiler.profiled_steps:
        found["line"] = found.get("line", f"profile: {found['verdict']}") + \
            f" (no trace: training ended within its first {profiler.skip + profiler.count} steps, which are timed)"
    files.write_json(run_dir / "profile.json", found)
    print(found.get("line", f"profile: {found['verdict']}"), flush=True)


def _raise_ended(progress, e: BaseException):
    """Record how `e` ended the run, then raise it (or what it became: see Progress.end)."""
    ended = progress.end(e)
    if ended is e:
        raise e
    raise ended from None


def _set_op_determinism(enabled: bool) -> None:
    """Deterministic ops on request; off again otherwise, as the setting is process-wide."""
    if enabled:
        tf.config.experimental.enable_op_determinism()
        return
    disable_op_determinism()


def _loss_error(spec, loss, error):
    """A located error when a training step failed inside the loss (e.g. labels out of range).

    Keras computes the loss under the name scope `compile_loss`, the custom loop under
    `loss`; an op failing there means the labels do not fit the loss.
    """
    text = error.message or ""
    if not re.search(r"node (\S*/)?(compile_)?loss/", text):
        return None
    lines = [
        line for line in text.splitlines()
        if line.strip() and not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    reason = re.split(r"\s*\[\[|\s*\[Op:|\s+Label values:", lines[-1] if lines else text)[0].strip()
    name = getattr(loss, "name", None) or "loss"
    return spec.error(("train", "loss"), f"loss {name!r} does not fit the labels: {reason}")


def _xla_error(spec, setup, error):
    """A located error when XLA could not compile a step (an op without an XLA kernel, a
    shape XLA cannot know when it compiles): the spec asked for jit_compile."""
    text = error.message or ""
    if not setup.jit_compile or not re.search(r"XLA_\w+_JIT|XLA compilation|tf2xla", text):
        return None
    op = re.search(r"No registered '(\w+)' OpKernel for (XLA_\w+_JIT)", text)
    reason = f"the op {op[1]} has no {op[2]} kernel" if op else "a shape it must know when it compiles is computed"
    return spec.error(("device", "jit_compile"),
                      f"XLA cannot compile this model's training step ({reason}): set jit_compile: false")
