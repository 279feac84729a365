"""`pipe run`: devices, data, model, training, evaluation and the run directory, in order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from runner.data import build_datasets
from runner.data.reuse import batches_repeat_each_epoch, small_enough
from runner.models import build_model, is_keras
from runner.models.identifiers import get_callbacks, get_loss, get_metrics, get_optimizer
from runner.outputs import files, history
from runner.outputs.manifest import Manifest
from runner.outputs.results import write_results
from runner.spec.metadata import substitute_metadata
from runner.train import checkpoint as checkpoints
from runner.train.custom import CustomLoop
from runner.train.devices import check_batch_stages, setup_devices
from runner.train.execution import resolve_steps_per_execution
from runner.train.fit import fit
from runner.train.profiling import StepProfiler, input_seconds_per_batch, verdict
from runner.train.loss_check import check_loss_fits


@dataclass
class RunResult:
    """The run directory and the final metrics, by split (`{"test": {"loss": ...}}`)."""

    run_dir: Path
    metrics: dict
    chief: bool = True  # False on the other workers of a cluster: their directory is gone


def run_spec(spec, *, quiet: bool = False, resume_from=None, profile: bool = False) -> RunResult:
    """Run a loaded spec end to end and write its run directory.

    Args:
        spec: a `runner.spec.Spec` (overrides already applied).
        quiet: no progress bars, report lines or device summary.
        resume_from: an earlier run directory of this spec: training restarts from its
            last checkpoint (model, optimizer, epoch). The new run still gets its own
            directory; history and trajectories continue the old.
        profile: profile a few training steps into <run>/tensorboard and print whether
            training is input-bound or compute-bound (runner/train/profiling.py).

    Raises:
        SpecError: a mistake in the spec, found while building (located).
    """
    setup = setup_devices(spec)  # before any other TensorFlow op
    check_batch_stages(spec, setup)
    if not quiet:
        print(setup.summary, flush=True)
    train_config = spec.doc["train"]
    seed = spec.doc.get("seed")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    _set_op_determinism(train_config.get("deterministic", False))

    datasets = build_datasets(spec)
    validation = _validation_split(spec, datasets)
    loop = train_config.get("loop", "fit")
    model_config = substitute_metadata(spec.doc["model"], datasets.info, spec, ("model",))
    with setup.strategy.scope():
        model = build_model(model_config, spec, seed=seed or 0)
        loss = get_loss(train_config["loss"], spec)
        optimizer = get_optimizer(train_config["optimizer"], spec)
        metrics = get_metrics(train_config.get("metrics"), spec)
        loss_object = check_loss_fits(loss, model, datasets.train.element_spec, spec)
    if not is_keras(model) and train_config.get("callbacks"):
        raise spec.error(("train", "callbacks"), "callbacks drive Keras models; a module model takes none")

    if loop == "fit" and setup.strategy_name == "multi_worker_mirrored":
        # Keras 3 Model.fit does not train under MultiWorkerMirroredStrategy
        # (keras-team/keras#20585); the custom loop runs the same steps there.
        loop = "custom"
        if not quiet:
            print("loop: custom (Keras fit does not run under multi_worker_mirrored)", flush=True)

    previous, run_dir, manifest = _open_run_dir(spec, setup, datasets, loop, resume_from)
    profiler = StepProfiler(run_dir / "tensorboard") if profile else None
    train = _train_fit if loop == "fit" else _train_custom
    try:
        try:
            result, evaluation = train(spec, setup, datasets, validation, model, loss_object, optimizer,
                                       metrics, run_dir, quiet, previous, profiler=profiler)
        except tf.errors.InvalidArgumentError as e:
            raise _loss_error(spec, loss_object, e) or e
        if profiler is not None:
            _report_profile(profiler, datasets.train, run_dir)
        write_results(spec, datasets, model, result, evaluation, run_dir)
        manifest.finish("completed", epochs_run=result.epochs_run)
    except BaseException as e:
        manifest.finish("failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        files.discard_run_dir(run_dir, setup.is_chief)
    return RunResult(run_dir=run_dir, metrics=evaluation, chief=setup.is_chief)


def _open_run_dir(spec, setup, datasets, loop, resume_from):
    """The run directory with its spec and manifest; the previous run to resume, if any."""
    previous = checkpoints.previous_run(resume_from) if resume_from is not None else None
    run_dir = files.create_run_dir(spec, setup.is_chief)
    spec_sha256 = files.write_spec(run_dir, spec)
    manifest = Manifest(run_dir, spec, spec_sha256=spec_sha256, devices=setup.manifest, files=datasets.files)
    manifest.update(loop=loop)
    if previous is not None:
        manifest.update(resumed_from=str(previous.run_dir), resumed_checkpoint=previous.checkpoint)
    return previous, run_dir, manifest


def _report_profile(profiler, train, run_dir) -> None:
    """The verdict of `--profile` (input- or compute-bound), printed and kept in profile.json."""
    found = verdict(profiler.step_seconds, input_seconds_per_batch(train.repeat()))
    found.update(timed_steps=len(profiler.step_seconds), profiled_steps=profiler.profiled_steps)
    found["trace"] = str(run_dir / "tensorboard")
    files.write_json(run_dir / "profile.json", found)
    print(found.get("line", f"profile: {found['verdict']}"), flush=True)


def _set_op_determinism(enabled: bool) -> None:
    """Deterministic ops on request; off again otherwise, as the setting is process-wide."""
    if enabled:
        tf.config.experimental.enable_op_determinism()
        return
    from tensorflow.python.framework import config  # TensorFlow exports no public disable

    if config.is_op_determinism_enabled():
        config.disable_op_determinism()


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


def _validation_split(spec, datasets):
    which = spec.doc["train"].get("validate_on")
    if which == "test":
        return datasets.test
    if which == "validation" or which is None:
        return datasets.validation
    return None


def _train_fit(spec, setup, datasets, validation, model, loss, optimizer, metrics, run_dir, quiet, previous,
               profiler=None):
    """Keras `fit`, then `evaluate` on each held-out split; returns (TrainResult, metrics by split)."""
    train_config = spec.doc["train"]
    output_config = spec.doc.get("outputs") or {}
    callbacks = get_callbacks(train_config.get("callbacks"), spec, run_dir) + ([profiler] if profiler else [])
    with setup.strategy.scope():
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=setup.jit_compile,
                      steps_per_execution=resolve_steps_per_execution(
                          train_config.get("steps_per_execution"), _steps(datasets.train, train_config)))
    if output_config.get("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    checkpoint = checkpoints.epoch_checkpoint(model, model.optimizer, run_dir, output_config.get("checkpoints", True))
    if checkpoints.checkpoints_enabled(output_config.get("checkpoints", True)):
        callbacks.append(checkpoint)
    initial_epoch = 0
    if previous is not None:
        with setup.strategy.scope():
            model.optimizer.build(model.trainable_variables)
        initial_epoch = checkpoints.restore(checkpoint, previous)
    with checkpoints.saved_on_interrupt(checkpoint):
        result = fit(
            model, train=datasets.train, validation=validation, epochs=train_config["epochs"],
            callbacks=callbacks, class_weight=_class_weight(train_config.get("class_weight")),
            steps_per_epoch=train_config.get("steps_per_epoch"),
            verbose=0 if quiet else train_config.get("verbose", "auto"), initial_epoch=initial_epoch,
        )
    result = checkpoints.continue_history(previous, result, initial_epoch)

    def evaluate(dataset, split):
        values = model.evaluate(dataset, verbose=0, return_dict=True)
        return {k: float(v) for k, v in values.items()}

    return result, _evaluate_held_out(spec, datasets, validation, result, evaluate)


def _train_custom(spec, setup, datasets, validation, model, loss, optimizer, metrics, run_dir, quiet, previous,
                  profiler=None):
    """The GradientTape loop, then its evaluation of each held-out split."""
    train_config = spec.doc["train"]
    output_config = spec.doc.get("outputs") or {}
    verbose = 0 if quiet else train_config.get("verbose", "auto")
    with setup.strategy.scope():
        custom = CustomLoop(
            model, loss=loss, optimizer=optimizer, metrics=metrics,
            element_spec=datasets.train.element_spec, setup=setup,
            class_weight=_class_weight(train_config.get("class_weight")),
            callbacks=get_callbacks(train_config.get("callbacks"), spec, run_dir) + ([profiler] if profiler else []),
            verbose=_custom_verbose(verbose, train_config), report=train_config.get("report"), spec=spec,
            steps_per_execution=train_config.get("steps_per_execution", 1),
        )
        if is_keras(model):
            # Sets model.optimizer for callbacks (ReduceLROnPlateau, ...) and model.keras.
            model.compile(optimizer=custom.optimizer, loss=loss)
    checkpoint = checkpoints.epoch_checkpoint(model, custom.optimizer, run_dir, output_config.get("checkpoints", True))
    initial_epoch = checkpoints.restore(checkpoint, previous) if previous is not None else 0
    train = datasets.train
    if batches_repeat_each_epoch(spec) and small_enough(train, datasets.info["num_examples"].get("train")):
        train = train.cache()  # the same batches every epoch: read them from memory
    with checkpoints.saved_on_interrupt(checkpoint):
        result = custom.fit(
            train, validation=validation, epochs=train_config["epochs"],
            steps_per_epoch=train_config.get("steps_per_epoch"),
            checkpoint=checkpoint if checkpoints.checkpoints_enabled(output_config.get("checkpoints", True)) else None,
            initial_epoch=initial_epoch, quiet=quiet,
        )
    result = checkpoints.continue_history(previous, result, initial_epoch)
    if output_config.get("tensorboard"):
        history.write_tensorboard(run_dir, result.history)

    def evaluate(dataset, split):
        # The test split's predictions come from this pass, for the confusion matrix.
        if split == "test" and custom.can_collect:
            metrics, result.predictions = custom.evaluate(dataset, collect=True)
            return metrics
        return custom.evaluate(dataset)

    return result, _evaluate_held_out(spec, datasets, validation, result, evaluate)


def _evaluate_held_out(spec, datasets, validation, result, evaluate) -> dict:
    """The final metrics by split: train's last epoch, then each held-out split.

    The split validated on after the last epoch is not evaluated again: its `val_` values
    are already those of the final weights (unless callbacks may have changed the weights
    after the last epoch, e.g. EarlyStopping restoring the best ones).
    """
    evaluation = {"train": _last(result.history)}
    reuse = not spec.doc["train"].get("callbacks") and result.history.get("val_loss")
    for split, dataset in (("validation", datasets.validation), ("test", datasets.test)):
        if dataset is None:
            continue
        if reuse and dataset is validation:
            evaluation[split] = {k[len("val_"):]: v[-1] for k, v in result.history.items() if k.startswith("val_") and v}
        else:
            evaluation[split] = evaluate(dataset, split)
    return evaluation


def _custom_verbose(verbose, train_config) -> int:
    """`auto`: a progress bar, unless report lines already say how each epoch went."""
    if verbose != "auto":
        return int(verbose)
    return 0 if (train_config.get("report") or {}).get("epoch") else 1


def _steps(dataset, train_config):
    """Steps per epoch: `steps_per_epoch`, else the dataset's batches when known."""
    count = int(dataset.cardinality())
    return train_config.get("steps_per_epoch") or (count if count > 0 else None)


def _class_weight(config):
    return {int(k): float(v) for k, v in config.items()} if config else None


def _last(history: dict) -> dict:
    return {k: v[-1] for k, v in history.items() if not k.startswith("val_") and v}
