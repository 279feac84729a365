"""`pipe run`: devices, data, model, training, evaluation and the run directory, in order."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runner import outputs, plots
from runner.data import build_datasets, substitute_metadata, synthetic_truth
from runner.devices import check_batch_stages, setup_devices
from runner.errors import SpecError
from runner.identifiers import get_callbacks, get_loss, get_metrics, get_optimizer
from runner.models import build_model, is_keras
from runner.training import CustomLoop, EpochCheckpoint, TrainResult, check_loss_fits, fit

# Plots draw every example; beyond this many they say little and cost much.
_MAX_PLOTTED_EXAMPLES = 100_000


@dataclass
class RunResult:
    """The run directory and the final metrics, by split (`{"test": {"loss": ...}}`)."""

    run_dir: Path
    metrics: dict
    chief: bool = True  # False on the other workers of a cluster: their directory is gone


def run_spec(spec, *, quiet: bool = False, resume_from=None) -> RunResult:
    """Run a loaded spec end to end and write its run directory.

    Args:
        spec: a `runner.spec.Spec` (overrides already applied).
        quiet: no progress bars, report lines or device summary.
        resume_from: an earlier run directory of this spec: training restarts from its
            last checkpoint (model, optimizer, epoch). The new run still gets its own
            directory; history and trajectories continue the old.

    Raises:
        SpecError: a mistake in the spec, found while building (located).
    """
    setup = setup_devices(spec)  # before any other TensorFlow op
    check_batch_stages(spec, setup)
    if not quiet:
        print(setup.summary, flush=True)
    train_config = spec.data["train"]
    seed = spec.data.get("seed")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    _set_op_determinism(train_config.get("deterministic", False))

    datasets = build_datasets(spec)
    validation = _validation_split(spec, datasets)
    loop = train_config.get("loop", "fit")
    model_config = substitute_metadata(spec.data["model"], datasets.info, spec, ("model",))
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

    previous = None
    if resume_from is not None:
        previous = _previous_run(resume_from)

    run_dir = outputs.create_run_dir(spec, setup.is_chief)
    spec_sha256 = outputs.write_spec(run_dir, spec)
    manifest = outputs.Manifest(
        run_dir, spec, spec_sha256=spec_sha256, devices=setup.manifest, files=datasets.files
    )
    manifest.update(loop=loop)
    if previous is not None:
        manifest.update(resumed_from=str(previous.run_dir), resumed_checkpoint=previous.checkpoint)
    try:
        try:
            result, evaluation = _train_and_evaluate(
                spec, setup, datasets, validation, model, loop, loss_object, optimizer, metrics,
                run_dir, quiet, previous,
            )
        except tf.errors.InvalidArgumentError as e:
            raise _loss_error(spec, loss_object, e) or e
        _write_results(spec, datasets, model, result, evaluation, run_dir)
        manifest.finish("completed", epochs_run=result.epochs_run)
    except BaseException as e:
        manifest.finish("failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        outputs.discard_run_dir(run_dir, setup.is_chief)
    return RunResult(run_dir=run_dir, metrics=evaluation, chief=setup.is_chief)


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
    which = spec.data["train"].get("validate_on")
    if which == "test":
        return datasets.test
    if which == "validation" or which is None:
        return datasets.validation
    return None


def _train_and_evaluate(spec, setup, datasets, validation, model, loop, loss, optimizer,
                        metrics, run_dir, quiet, previous=None):
    """Train with the declared loop; returns (TrainResult, metrics by split)."""
    train_config = spec.data["train"]
    output_config = spec.data.get("outputs") or {}
    epochs = train_config["epochs"]
    callbacks = get_callbacks(train_config.get("callbacks"), spec, run_dir)
    verbose = 0 if quiet else train_config.get("verbose", "auto")
    class_weight = _class_weight(train_config.get("class_weight"))
    checkpoints = output_config.get("checkpoints", True)

    if loop == "fit":
        with setup.strategy.scope():
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=setup.jit_compile)
        if output_config.get("tensorboard"):
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
        checkpoint = _epoch_checkpoint(model, model.optimizer, run_dir)
        if checkpoints:
            callbacks.append(checkpoint)
        initial_epoch = 0
        if previous is not None:
            with setup.strategy.scope():
                model.optimizer.build(model.trainable_variables)
            initial_epoch = _restore(checkpoint, previous)
        result = fit(
            model, train=datasets.train, validation=validation, epochs=epochs, callbacks=callbacks,
            class_weight=class_weight, steps_per_epoch=train_config.get("steps_per_epoch"),
            verbose=verbose, initial_epoch=initial_epoch,
        )
        result = _continue(previous, result, initial_epoch)
        evaluation = {"train": _last(result.history)}
        for split, dataset in (("validation", datasets.validation), ("test", datasets.test)):
            if dataset is not None:
                values = model.evaluate(dataset, verbose=0, return_dict=True)
                evaluation[split] = {k: float(v) for k, v in values.items()}
        return result, evaluation

    with setup.strategy.scope():
        custom = CustomLoop(
            model, loss=loss, optimizer=optimizer, metrics=metrics,
            element_spec=datasets.train.element_spec, setup=setup, class_weight=class_weight,
            callbacks=callbacks, verbose=_custom_verbose(verbose, train_config),
            report=train_config.get("report"), spec=spec,
        )
        if is_keras(model):
            # Sets model.optimizer for callbacks (ReduceLROnPlateau, ...) and model.keras.
            model.compile(optimizer=custom.optimizer, loss=loss)
    checkpoint = _epoch_checkpoint(model, custom.optimizer, run_dir)
    initial_epoch = _restore(checkpoint, previous) if previous is not None else 0
    writer = _summary_writer(run_dir) if output_config.get("tensorboard") else None
    result = custom.fit(
        datasets.train, validation=validation, epochs=epochs,
        steps_per_epoch=train_config.get("steps_per_epoch"),
        checkpoint=checkpoint if checkpoints else None, initial_epoch=initial_epoch, quiet=quiet,
    )
    result = _continue(previous, result, initial_epoch)
    if writer is not None:
        _write_summaries(writer, result.history)
    evaluation = {"train": _last(result.history)}
    for split, dataset in (("validation", datasets.validation), ("test", datasets.test)):
        if dataset is not None:
            evaluation[split] = custom.evaluate(dataset)
    return result, evaluation


@dataclass
class _PreviousRun:
    run_dir: Path
    checkpoint: str


def _previous_run(run_dir) -> _PreviousRun:
    """The run directory to resume from and its last checkpoint."""
    run_dir = Path(run_dir)
    checkpoint = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if checkpoint is None:
        raise SpecError(f"no checkpoint to resume from in {run_dir / 'checkpoints'}", file=run_dir)
    return _PreviousRun(run_dir, checkpoint)


def _restore(checkpoint: EpochCheckpoint, previous: _PreviousRun) -> int:
    """Restore model, optimizer and epoch from the previous run; returns the next epoch."""
    status = checkpoint.manager.checkpoint.restore(previous.checkpoint)
    status.assert_existing_objects_matched()
    return int(checkpoint.epoch.numpy())


def _continue(previous, result: TrainResult, initial_epoch: int) -> TrainResult:
    """Prefix the epochs trained before the resume (from the previous run's files)."""
    if previous is None or initial_epoch == 0:
        return result
    history = _read_json(previous.run_dir / "history.json")
    for key, values in result.history.items():
        values[:0] = history.get(key, [])[:initial_epoch]
    before = _read_json(previous.run_dir / "trajectories.json")
    for key, values in result.trajectories.items():
        values[:1] = before.get(key, [])[: initial_epoch + 1] or values[:1]
    result.epochs_run = len(result.history.get("loss", []))
    return result


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _custom_verbose(verbose, train_config) -> int:
    """`auto`: a progress bar, unless report lines already say how each epoch went."""
    if verbose != "auto":
        return int(verbose)
    return 0 if (train_config.get("report") or {}).get("epoch") else 1


def _epoch_checkpoint(model, optimizer, run_dir) -> EpochCheckpoint:
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints"), max_to_keep=3)
    return EpochCheckpoint(manager, epoch)


def _summary_writer(run_dir):
    return tf.summary.create_file_writer(str(run_dir / "tensorboard"))


def _write_summaries(writer, history) -> None:
    with writer.as_default():
        for name, values in history.items():
            for epoch, value in enumerate(values):
                tf.summary.scalar(name, value, step=epoch)
    writer.flush()


def _class_weight(config):
    return {int(k): float(v) for k, v in config.items()} if config else None


def _last(history: dict) -> dict:
    return {k: v[-1] for k, v in history.items() if not k.startswith("val_") and v}


def _write_results(spec, datasets, model, result: TrainResult, evaluation, run_dir) -> None:
    """history, trajectories, metrics, model and plots into the run directory."""
    output_config = spec.data.get("outputs") or {}
    outputs.write_history(run_dir, result.history)
    outputs.write_trajectories(run_dir, result.trajectories)
    outputs.write_json(run_dir / "metrics.json", evaluation)
    if output_config.get("save_model", True):
        outputs.save_model(model, run_dir, datasets.train.element_spec)
    plot_config = output_config.get("plots") or {}
    if not plot_config.get("enabled", True):
        return
    if result.history:
        plots.plot_history(result.history, run_dir / "history.png")
    if result.trajectories:
        plots.plot_trajectories(result.trajectories, run_dir / "trajectories.png", plot_config.get("truth"))
    element_spec = datasets.train.element_spec
    if _is_1d_regression(element_spec):
        _plot_regression(spec, datasets.train, model, run_dir)
    elif plot_config.get("confusion_matrix", True) and _is_classification(element_spec):
        dataset = datasets.test or datasets.validation or datasets.train
        matrix = _confusion_matrix(model, dataset)
        if matrix is not None:
            plots.plot_confusion_matrix(matrix, run_dir / "confusion_matrix.png", datasets.info.get("class_names"))


def _is_1d_regression(element_spec) -> bool:
    if not isinstance(element_spec, tuple) or len(element_spec) != 2:
        return False
    x, y = element_spec
    return (
        isinstance(x, tf.TensorSpec) and isinstance(y, tf.TensorSpec)
        and x.dtype.is_floating and y.dtype.is_floating
        and x.shape[1:].num_elements() == 1 and y.shape[1:].num_elements() == 1
    )


def _is_classification(element_spec) -> bool:
    if not isinstance(element_spec, tuple) or len(element_spec) != 2:
        return False
    y = element_spec[1]
    if not isinstance(y, tf.TensorSpec):
        return False
    sparse = y.dtype.is_integer and y.shape[1:].num_elements() in (0, 1)
    one_hot = y.shape.rank == 2 and (y.shape[-1] or 0) > 1
    return sparse or one_hot


def _predict(model, x):
    if is_keras(model):
        return model(x, training=False)
    return model(x)


def _collect(dataset, model, limit=_MAX_PLOTTED_EXAMPLES):
    """Features, labels and predictions of a dataset as numpy arrays (up to `limit`)."""
    xs, ys, ps, seen = [], [], [], 0
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        ps.append(np.asarray(tf.cast(_predict(model, x), tf.float32)))
        seen += len(xs[-1])
        if seen >= limit:
            break
    if not xs:
        return None
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ps)


def _plot_regression(spec, dataset, model, run_dir) -> None:
    collected = _collect(dataset, model)
    if collected is None:
        return
    x, y, predictions = collected
    truth = synthetic_truth(spec.data["data"]["train"]["source"], x)  # None unless synthetic
    plots.plot_regression(x, y, predictions, run_dir / "predictions.png", truth=truth)


def _confusion_matrix(model, dataset):
    collected = _collect(dataset, model, limit=10**9)
    if collected is None:
        return None
    _, y, predictions = collected
    if predictions.ndim != 2 or predictions.shape[-1] < 2:
        return None
    labels = y.argmax(-1) if y.ndim == 2 and y.shape[-1] > 1 else y.reshape(-1)
    classes = predictions.shape[-1]
    return tf.math.confusion_matrix(labels.astype(np.int64), predictions.argmax(-1), num_classes=classes).numpy()
