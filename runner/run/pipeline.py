"""`pipe run`: devices, data, model, training, evaluation and the run directory, in order."""

from __future__ import annotations

import functools
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from runner import console
from runner.data.sources.image_folder import located_decode_error
from runner.export.write import check_export_extras, export_finished_run, model_fingerprint
from runner.models import is_keras
from runner.models.adapt import describe as describe_adapted
from runner.models.adapt import save_adapted
from runner.models.catalog_check import warn_on_catalog_drift
from runner.outputs import files
from runner.outputs.failure import note_error_log
from runner.outputs.hparams import spec_hparams, write_final_metrics, write_hparams
from runner.outputs.manifest import Manifest
from runner.outputs.results import write_results
from runner.outputs.run_dir import RunDir
from runner.outputs.tracking_run import check_tracking_folder, track_finished_run
from runner.run.build import Build
from runner.run.choice import choose_training, training_loop
from runner.run.engines import TrainingContext, train_with
from runner.run.epoch_end import Progress
from runner.run import interrupts
from runner.run.interrupts import RunInterrupted, deferred, on_unanswered, signals_raise
from runner.run.resume import prepare_resume
from runner.spec.errors import SpecError
from runner.train import checkpoint as checkpoints
from runner.train.phases import describe_phases
from runner.train.profiling import StepProfiler, input_seconds_per_batch, verdict

@dataclass
class RunResult:
    """The run directory and the final metrics, by split (`{"test": {"loss": ...}}`)."""

    run_dir: Path
    metrics: dict
    chief: bool = True  # False on the other workers of a cluster: their directory is gone


def run_spec(spec, *, quiet: bool = False, resume_from=None, profile: bool = False,
             track: bool = True, shared_data=None, hparams: dict | None = None) -> RunResult:
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
        shared_data: a `runner.run.shared_data.SharedData` kept across the runs of one
            process (a sweep's worker): datasets declared the same are built once.
        hparams: the run's TensorBoard HParams (with `outputs.tensorboard`), by name; None:
            every value of the spec (a sweep's trial gives its swept values).

    Raises:
        SpecError: a mistake in the spec, found while building (located), or a run that
            cannot be resumed.
        RunInterrupted: SIGINT, SIGTERM or SIGHUP; the manifest says `interrupted`.
        TrainingDiverged: a NaN or infinite loss; the manifest says `diverged`.
        WriteError: a file of the run directory could not be written (which, and why).
    """
    with signals_raise():
        return _run_spec(spec, quiet, resume_from, profile, track, shared_data, hparams)


def _run_spec(spec, quiet, resume_from, profile, track, shared_data, hparams) -> RunResult:
    train_config = spec.sections.train
    if profile and train_config.engine == "fused":
        raise train_config.error("engine", "pipe run --profile times the steps of the tf.data loops, which "
                                 "the fused engine does not run: set train.engine to keras or auto to profile",
                                 at_value=True)
    if track:  # MLflow would make a missing folder as the run ends: refused before it starts
        check_tracking_folder(spec)
    build = Build(spec, quiet=quiet, resume_from=resume_from, shared=shared_data).through("devices")
    setup = build.setup
    warn_on_catalog_drift()
    check_export_extras(spec)  # outputs.export: a missing extra is said before training, not after
    if train_config.steps_per_epoch is None:
        console.hide_known_noise()  # each epoch reads its finite dataset to the end, by design
    build.through("metrics")
    datasets, model, validated = build.datasets, build.model, build.validated
    _keras_xla_verdict(setup, model, quiet, deterministic=train_config.deterministic)
    phases = describe_phases(model, spec)  # each phase's layers and optimizer, checked before the run starts
    if not is_keras(model) and train_config.callbacks:
        raise train_config.error("callbacks", "callbacks drive Keras models; a module model takes none")
    loop = training_loop(train_config, setup, quiet)
    if train_config.engine == "fused":  # whether the data can be held: refused before a run directory exists
        choose_training(spec, setup, datasets, loop, callbacks=[], profiling=profile, model=model)

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
    on_unanswered(functools.partial(_end_unanswered, progress, run_dir))
    try:
        files.write_spec(run_dir, spec)
        tensorboard = spec.sections.outputs.tensorboard and setup.is_chief
        if tensorboard:
            write_hparams(run_dir, spec_hparams(spec.doc) if hparams is None else hparams,
                          session=f"{spec.sections.name}/{run_dir.path.name}")
        if build.adapted:  # preprocessing layers adapted on the train split (runner.models.adapt)
            manifest.update(adapted=build.adapted)
            save_adapted(model, build.adapted, run_dir)
            if not quiet:
                print("\n".join(describe_adapted(build.adapted)), flush=True)
        manifest.update(loop=loop)
        if phases:
            manifest.update(phases=[{k: v for k, v in p.items() if k != "line"} for p in phases])
        # For evaluate/predict: what the spec's relative paths meant, and the data's metadata.
        manifest.update(spec_dir=str(spec.resolve_path(".")), data_info=datasets.info)
        if previous is not None:
            manifest.update(resumed_from=str(previous.run_dir), resumed_checkpoint=previous.checkpoint,
                            resumed_at_epoch=previous.epoch, epochs_done=previous.epoch)
        callbacks = build.callbacks(run_dir)
        # the fused engine, or tf.data (always under --profile: it times tf.data steps)
        engine = choose_training(spec, setup, datasets, loop, callbacks, profiling=profile, model=model)
        manifest.update(engine=engine.name, engine_reason=engine.reason)
        if not quiet and train_config.declares("engine"):
            print(engine.line, flush=True)
        context = TrainingContext(spec, setup, datasets, build.validation, model, build.loss_object, build.optimizer,
                                  build.metrics, callbacks, run_dir, quiet, progress, profiler)
        result, evaluation = train_with(engine, context)
        if profiler is not None:
            _report_profile(profiler, datasets.train, run_dir, quiet)
        with deferred():
            write_results(spec, datasets, model, result, evaluation, run_dir)
            if tensorboard:
                write_final_metrics(run_dir, evaluation, step=result.epochs_run)
            if setup.is_chief:  # what pipe export checks the model file against
                manifest.update(**model_fingerprint(run_dir.path))
            if spec.sections.outputs.export and setup.is_chief:
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
        on_unanswered(None)
        if setup.is_chief and not run_dir.replaced():
            files.remove_partial_files(run_dir)
        files.discard_run_dir(run_dir, setup.is_chief)
        if track and setup.is_chief and spec.sections.outputs.mlflow is not None:
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


def _report_profile(profiler, train, run_dir, quiet) -> None:
    """The verdict of `--profile` (input- or compute-bound), kept in profile.json and printed
    (not under --quiet)."""
    found = verdict(profiler.step_seconds, input_seconds_per_batch(train.repeat()))
    found.update(timed_steps=len(profiler.step_seconds), profiled_steps=profiler.profiled_steps)
    found["trace"] = str(run_dir / "tensorboard") if profiler.profiled_steps else None
    if not profiler.profiled_steps:
        found["line"] = found.get("line", f"profile: {found['verdict']}") + \
            f" (no trace: training ended within its first {profiler.skip + profiler.count} steps, which are timed)"
    files.write_json(run_dir / "profile.json", found)
    if not quiet:
        print(found.get("line", f"profile: {found['verdict']}"), flush=True)


def _end_unanswered(progress, run_dir, signum: int) -> None:
    """A signal TensorFlow kept the main thread from answering: the run as interrupted at its
    last saved epoch, said as an answered signal says it (the process ends after this)."""
    stopped = progress.end(RunInterrupted(signum))
    files.remove_partial_files(run_dir)
    stopped.command_line = interrupts.resume_command
    print(stopped.report("run"), file=sys.stderr, flush=True)


def _raise_ended(progress, e: BaseException):
    """Record how `e` ended the run, then raise it (or what it became: see Progress.end)."""
    ended = progress.end(e)
    if ended is e:
        raise e
    raise ended from None
