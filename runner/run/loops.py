"""The two tf.data engines of `pipe run`: Keras `fit` and the GradientTape loop.

Each trains every phase of the spec and returns its tables with its way of evaluating a
held-out split (`runner.run.engines.TrainingResult`); `train_with` does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from runner import console
from runner.data.reuse import batches_repeat_each_epoch, shuffles_by_epoch, small_enough
from runner.models import is_keras
from runner.run.engines import TrainingContext, TrainingResult
from runner.train import checkpoint as checkpoints
from runner.train.class_weight import class_weights
from runner.train.custom import CustomLoop, say_which_way_metrics_improve
from runner.train.divergence import StopOnNonFinite
from runner.train.engine import EngineChoice
from runner.train.epoch_end import EpochBegin, EpochEnd
from runner.train.execution import resolve_steps_per_execution
from runner.train.fit import fit
from runner.train.multi_output import loop_metrics
from runner.train.phases import append_in_later_phases, phases_to_train


@dataclass
class FitEngine(EngineChoice):
    """Keras `fit` (once per phase, the model recompiled); Keras `evaluate` on held-out splits."""

    def train(self, context: TrainingContext) -> TrainingResult:
        c, train, outputs = context, context.train, context.outputs
        model, datasets, setup = c.model, c.datasets, c.setup
        callbacks = list(c.callbacks)
        if outputs.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(c.run_dir / "tensorboard")))
        if c.profiler is not None:
            callbacks.append(c.profiler)
        epochs = train.total_epochs
        for phase, phase_optimizer, restore, trains in phases_to_train(c.spec, model, c.optimizer,
                                                                        c.progress.previous, setup, c.quiet):
            with setup.strategy.scope():
                _reset_states(c.metrics)
                model.compile(optimizer=phase_optimizer, loss=getattr(c.loss, "per_output", c.loss), metrics=c.metrics,
                              loss_weights=getattr(c.loss, "loss_weights", None), jit_compile=setup.jit_compile,
                              steps_per_execution=resolve_steps_per_execution(
                                  train.steps_per_execution, _steps(datasets.train, train)))
            if isinstance(c.metrics, dict):  # fit names them <output>_<metric>, but cannot find them by that name
                with setup.strategy.scope():
                    say_which_way_metrics_improve(callbacks, loop_metrics(c.metrics, model,
                                                                          datasets.train.element_spec, c.loss))
            checkpoint = checkpoints.epoch_checkpoint(model, model.optimizer, c.run_dir, outputs.checkpoints)
            initial_epoch = train.initial_epoch if phase.index == 0 else phase.start
            if restore:
                with setup.strategy.scope():
                    model.optimizer.build(model.trainable_variables)
                initial_epoch = checkpoints.restore(checkpoint, c.progress.previous)
            if not trains:
                continue
            # Last: the epoch's tables, checkpoint and heartbeat see the logs as callbacks left them.
            phase_callbacks = [EpochBegin(datasets.epoch.assign), StopOnNonFinite(), *callbacks,
                               EpochEnd(c.progress.epoch_end(checkpoints.saving(checkpoint, outputs.checkpoints),
                                                             epochs, model))]
            result = fit(
                model, train=datasets.train, validation=c.validation, epochs=phase.end,
                callbacks=phase_callbacks, class_weight=class_weights(train, datasets.info),
                steps_per_epoch=train.steps_per_epoch,
                verbose=0 if c.quiet else console.progress_verbosity(train.verbose),
                initial_epoch=initial_epoch, validation_freq=train.validation_freq,
            )
            append_in_later_phases(callbacks)
            if getattr(model, "stop_training", False):
                break  # a callback stopped training: the phases after this one do not run

        def evaluate(dataset, split, result):
            values = model.evaluate(dataset, verbose=0, return_dict=True)
            return {k: float(v) for k, v in values.items()}

        return TrainingResult(result, evaluate, wrote_tensorboard=True)


@dataclass
class CustomEngine(EngineChoice):
    """The GradientTape loop (a new one per phase), and its own evaluation of held-out splits."""

    def train(self, context: TrainingContext) -> TrainingResult:
        c, train, outputs = context, context.train, context.outputs
        model, datasets, setup = c.model, c.datasets, c.setup
        spec = c.spec
        verbose = 0 if c.quiet else train.verbose
        data = datasets.train
        if (batches_repeat_each_epoch(spec) and train.steps_per_epoch is None
                and small_enough(data, datasets.info["num_examples"].get("train"))):
            data = data.cache()  # the same batches every epoch: read them from memory
        epochs = train.total_epochs
        started = False
        for phase, phase_optimizer, restore, trains in phases_to_train(spec, model, c.optimizer, c.progress.previous,
                                                                        setup, c.quiet):
            with setup.strategy.scope():
                custom = CustomLoop(
                    model, loss=c.loss, optimizer=phase_optimizer,
                    metrics=loop_metrics(c.metrics, model, datasets.train.element_spec, c.loss),
                    element_spec=datasets.train.element_spec, setup=setup,
                    class_weight=class_weights(train, datasets.info),
                    callbacks=c.callbacks + ([c.profiler] if c.profiler is not None else []),
                    steps_per_execution=train.steps_per_execution,
                    verbose=_custom_verbose(verbose, train), report=train.report.as_dict(), spec=spec,
                )
                if is_keras(model):
                    # Sets model.optimizer for callbacks (ReduceLROnPlateau, ...) and model.keras.
                    model.compile(optimizer=custom.optimizer, loss=getattr(c.loss, "per_output", c.loss))
            checkpoint = checkpoints.epoch_checkpoint(model, custom.optimizer, c.run_dir, outputs.checkpoints)
            initial_epoch = train.initial_epoch if phase.index == 0 else phase.start
            if restore:
                initial_epoch = checkpoints.restore(checkpoint, c.progress.previous)
            if not trains:
                continue
            if not started:
                c.progress.log.start(custom.scalar_values())
                started = True
            result = custom.fit(
                data, validation=c.validation, epochs=phase.end,
                steps_per_epoch=train.steps_per_epoch,
                initial_epoch=initial_epoch, quiet=c.quiet,
                # The epoch seeds the shuffle stages' orders; setting it costs as much as a tiny step.
                epoch_begin=datasets.epoch.assign if shuffles_by_epoch(spec) else None,
                epoch_end=c.progress.epoch_end(checkpoints.saving(checkpoint, outputs.checkpoints), epochs, model),
                one_iterator=not shuffles_by_epoch(spec, "train"),
                validation_freq=train.validation_freq,
            )
            append_in_later_phases(c.callbacks)
            if custom.is_keras and getattr(model, "stop_training", False):
                break  # a callback stopped training: the phases after this one do not run

        def evaluate(dataset, split, result):
            # The test split's predictions come from this pass, for the confusion matrix.
            if split == "test" and custom.can_collect:
                values, result.predictions = custom.evaluate(dataset, collect=True)
                return values
            return custom.evaluate(dataset)

        return TrainingResult(result, evaluate)


def _custom_verbose(verbose, train) -> int:
    """`auto`: a progress bar, unless report lines already say how each epoch went."""
    if verbose != "auto":
        return int(verbose)
    return 0 if train.report.epoch else console.progress_verbosity()


def _steps(dataset, train):
    """Steps per epoch: `steps_per_epoch`, else the dataset's batches when known."""
    count = int(dataset.cardinality())
    return train.steps_per_epoch or (count if count > 0 else None)


def _reset_states(metrics) -> None:
    """Empty the metric objects a phase compiles again: `fit` resets a compiled metric only
    once it has been built into the model's metrics, after the first epoch has begun, so a
    later phase's first epoch would otherwise count the previous evaluation's examples."""
    for metric in keras.tree.flatten(metrics):
        if isinstance(metric, keras.metrics.Metric):
            metric.reset_state()
