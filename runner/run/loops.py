"""The two tf.data training loops of `pipe run`: Keras `fit` and the GradientTape loop.

Each trains every phase of the spec, then evaluates the held-out splits, and returns
(TrainResult, metrics by split); `runner.run.fused` gives the fused engine the same shape.
"""

from __future__ import annotations

import keras

from runner import console
from runner.data.reuse import batches_repeat_each_epoch, shuffles_by_epoch, small_enough
from runner.models import is_keras
from runner.models.identifiers import get_callbacks
from runner.outputs import history
from runner.spec.phases import total_epochs
from runner.train import checkpoint as checkpoints
from runner.train.class_weight import class_weights
from runner.train.custom import CustomLoop, say_which_way_metrics_improve
from runner.train.divergence import StopOnNonFinite
from runner.train.epoch_end import EpochBegin, EpochEnd
from runner.train.execution import resolve_steps_per_execution
from runner.train.fit import fit
from runner.train.multi_output import loop_metrics
from runner.train.phases import phases_to_train
from runner.train.result import evaluate_held_out, final_train_metrics


def train_fit(spec, setup, datasets, validation, model, loss, optimizer, metrics, run_dir, quiet, progress,
               profiler=None):
    """Keras `fit` (once per phase, the model recompiled), then `evaluate` on each held-out split;
    returns (TrainResult, metrics by split)."""
    train_config = spec.doc["train"]
    output_config = spec.doc.get("outputs") or {}
    callbacks = get_callbacks(train_config.get("callbacks"), spec, run_dir)
    if output_config.get("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    if profiler is not None:
        callbacks.append(profiler)
    first_epoch = train_config.get("initial_epoch", 0)  # the history's first row, resumed or not
    epochs = total_epochs(train_config)
    phases = phases_to_train(spec, model, optimizer, progress.previous, setup, quiet)
    for phase, phase_optimizer_, restore, trains in phases:
        with setup.strategy.scope():
            model.compile(optimizer=phase_optimizer_, loss=getattr(loss, "per_output", loss), metrics=metrics,
                          loss_weights=getattr(loss, "loss_weights", None), jit_compile=setup.jit_compile,
                          steps_per_execution=resolve_steps_per_execution(
                              train_config.get("steps_per_execution"), _steps(datasets.train, train_config)))
        if isinstance(metrics, dict):  # fit names them <output>_<metric>, but cannot find them by that name
            with setup.strategy.scope():
                say_which_way_metrics_improve(callbacks, loop_metrics(metrics, model, datasets.train.element_spec,
                                                                      loss))
        checkpoint = checkpoints.epoch_checkpoint(model, model.optimizer, run_dir, output_config.get("checkpoints"))
        initial_epoch = first_epoch if phase.index == 0 else phase.start
        if restore:
            with setup.strategy.scope():
                model.optimizer.build(model.trainable_variables)
            initial_epoch = checkpoints.restore(checkpoint, progress.previous)
        if not trains:
            continue
        # Last: the epoch's tables, checkpoint and heartbeat see the logs as callbacks left them.
        phase_callbacks = [EpochBegin(datasets.epoch.assign), StopOnNonFinite(), *callbacks,
                           EpochEnd(progress.epoch_end(checkpoints.saving(checkpoint, output_config.get("checkpoints")),
                                                       epochs, model))]
        result = fit(
            model, train=datasets.train, validation=validation, epochs=phase.end,
            callbacks=phase_callbacks, class_weight=class_weights(train_config, datasets.info),
            steps_per_epoch=train_config.get("steps_per_epoch"),
            verbose=0 if quiet else console.progress_verbosity(train_config.get("verbose", "auto")),
            initial_epoch=initial_epoch, validation_freq=train_config.get("validation_freq", 1),
        )
        if getattr(model, "stop_training", False):
            break  # a callback stopped training: the phases after this one do not run
    result = progress.result(result)
    result.history = _align_validation(result.history, train_config.get("validation_freq", 1), first_epoch)

    def evaluate(dataset, split):
        values = model.evaluate(dataset, verbose=0, return_dict=True)
        return {k: float(v) for k, v in values.items()}

    final = final_train_metrics(result.history, phase_callbacks, first_epoch)
    return result, evaluate_held_out(spec, datasets, validation, result, final, evaluate)


def train_custom(spec, setup, datasets, validation, model, loss, optimizer, metrics, run_dir, quiet, progress,
                  profiler=None):
    """The GradientTape loop (a new one per phase), then its evaluation of each held-out split."""
    train_config = spec.doc["train"]
    output_config = spec.doc.get("outputs") or {}
    verbose = 0 if quiet else train_config.get("verbose", "auto")
    callbacks = get_callbacks(train_config.get("callbacks"), spec, run_dir)
    train = datasets.train
    if (batches_repeat_each_epoch(spec) and train_config.get("steps_per_epoch") is None
            and small_enough(train, datasets.info["num_examples"].get("train"))):
        train = train.cache()  # the same batches every epoch: read them from memory
    first_epoch = train_config.get("initial_epoch", 0)  # the history's first row, resumed or not
    epochs = total_epochs(train_config)
    started = False
    phases = phases_to_train(spec, model, optimizer, progress.previous, setup, quiet)
    for phase, phase_optimizer_, restore, trains in phases:
        with setup.strategy.scope():
            custom = CustomLoop(
                model, loss=loss, optimizer=phase_optimizer_,
                metrics=loop_metrics(metrics, model, datasets.train.element_spec, loss),
                element_spec=datasets.train.element_spec, setup=setup,
                class_weight=class_weights(train_config, datasets.info),
                callbacks=callbacks + ([profiler] if profiler is not None else []),
                steps_per_execution=train_config.get("steps_per_execution", 1),
                verbose=_custom_verbose(verbose, train_config), report=train_config.get("report"), spec=spec,
            )
            if is_keras(model):
                # Sets model.optimizer for callbacks (ReduceLROnPlateau, ...) and model.keras.
                model.compile(optimizer=custom.optimizer, loss=getattr(loss, "per_output", loss))
        checkpoint = checkpoints.epoch_checkpoint(model, custom.optimizer, run_dir, output_config.get("checkpoints"))
        initial_epoch = first_epoch if phase.index == 0 else phase.start
        if restore:
            initial_epoch = checkpoints.restore(checkpoint, progress.previous)
        if not trains:
            continue
        if not started:
            progress.log.start(custom.scalar_values())
            started = True
        result = custom.fit(
            train, validation=validation, epochs=phase.end,
            steps_per_epoch=train_config.get("steps_per_epoch"),
            initial_epoch=initial_epoch, quiet=quiet,
            # The epoch seeds the shuffle stages' orders; setting it costs as much as a tiny step.
            epoch_begin=datasets.epoch.assign if shuffles_by_epoch(spec) else None,
            epoch_end=progress.epoch_end(checkpoints.saving(checkpoint, output_config.get("checkpoints")),
                                         epochs, model),
            one_iterator=not shuffles_by_epoch(spec, "train"),
            validation_freq=train_config.get("validation_freq", 1),
        )
        if custom.is_keras and getattr(model, "stop_training", False):
            break  # a callback stopped training: the phases after this one do not run
    result = progress.result(result)
    result.history = _align_validation(result.history, train_config.get("validation_freq", 1), first_epoch)
    if output_config.get("tensorboard"):
        history.write_tensorboard(run_dir, result.history)

    def evaluate(dataset, split):
        # The test split's predictions come from this pass, for the confusion matrix.
        if split == "test" and custom.can_collect:
            values, result.predictions = custom.evaluate(dataset, collect=True)
            return values
        return custom.evaluate(dataset)

    final = final_train_metrics(result.history, callbacks, first_epoch)
    return result, evaluate_held_out(spec, datasets, validation, result, final, evaluate)


def _custom_verbose(verbose, train_config) -> int:
    """`auto`: a progress bar, unless report lines already say how each epoch went."""
    if verbose != "auto":
        return int(verbose)
    return 0 if (train_config.get("report") or {}).get("epoch") else console.progress_verbosity()


def _steps(dataset, train_config):
    """Steps per epoch: `steps_per_epoch`, else the dataset's batches when known."""
    count = int(dataset.cardinality())
    return train_config.get("steps_per_epoch") or (count if count > 0 else None)


def _align_validation(history: dict, frequency: int, first_epoch: int) -> dict:
    """Validation columns one value per epoch (None where `validation_freq` skipped the epoch)."""
    epochs = len(history.get("loss", []))
    validated = [i for i in range(epochs) if (first_epoch + i + 1) % frequency == 0]  # as Keras counts
    aligned = {}
    for key, values in history.items():
        if key.startswith("val_") and len(values) == len(validated) < epochs:
            full = [None] * epochs
            for i, value in zip(validated, values):
                full[i] = value
            values = full
        aligned[key] = values
    return aligned
