"""The one build step: what a spec makes before training, in the order `pipe run` makes it.

devices → seed → op determinism → datasets (and class weights checked against them) →
model (preprocessing layers adapted) → loss and metrics resolved for its outputs →
optimizer → loss checked on the data → metrics checked on the data. `pipe run`, `pipe plan`
and `pipe evaluate` all build through `Build.through`, each as far as it needs; `pipe
predict` and `pipe evaluate` take the model the run saved (`restored_model`) instead of
building one. The callbacks are made per run directory (`Build.callbacks`).
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from runner.data import build_datasets
from runner.internals import disable_op_determinism
from runner.models import build_model, is_keras
from runner.models.adapt import Adapter
from runner.models.build import declared_output_names
from runner.models.identifiers import get_callbacks, get_optimizer
from runner.outputs.saving import load_model
from runner.spec.errors import SpecError
from runner.spec.metadata import substitute_metadata
from runner.train.class_weight import check_class_weight
from runner.train.devices import check_batch_stages, setup_devices
from runner.train.execution import check_steps_per_epoch
from runner.train.loss_check import check_loss_fits, check_metrics_fit
from runner.train.multi_output import resolve_outputs

# Each step needs the ones before it; `Build.through` runs them in this order, once each.
STEPS = ("devices", "seed", "determinism", "datasets", "model", "outputs", "optimizer", "loss", "metrics")


def _raise(step):
    return step()


class Build:
    """The objects a run is made of, built step by step in `STEPS` order.

    Args:
        spec: the loaded `Spec`.
        quiet: no device summary printed.
        resume_from: the run directory a resumed run continues (its adapted layers are reused).
        learned: the statistics train taught an earlier run (`pipe evaluate`), else learned anew.
        model: a function giving the model to use instead of building one (a saved run's).
        shared: a `runner.run.shared_data.SharedData` whose datasets are reused when the
            data is declared the same (a sweep's worker); None: built for this run alone.
        collect: `collect(step)` runs `step()` and returns its value, or None after keeping
            its SpecError (`pipe plan` reports every mistake, not only the first); by
            default a SpecError is raised.
    """

    def __init__(self, spec, *, quiet=True, resume_from=None, learned=None, model=None, collect=None, shared=None):
        self.spec = spec
        self._shared = shared if learned is None else None  # learned statistics given: not the run's own data
        self.quiet = quiet
        self._resume_from = resume_from
        self._learned = learned
        self._given_model = model
        self._collect = collect or _raise
        self.done: list[str] = []
        self.setup = None  # DeviceSetup
        self.datasets = None  # runner.data.Datasets
        self.validated = None  # the split validated on after each epoch, or None
        self.model = None
        self.adapted = []  # preprocessing layers adapted on train (runner.models.adapt)
        self.loss = None  # the loss resolved for the model's outputs; checked: `loss_object`
        self.loss_object = None  # the loss the loops compute (checked on a batch shaped like the data)
        self.metrics = None
        self.optimizer = None

    @property
    def sections(self):
        return self.spec.sections

    @property
    def validation(self):
        """The dataset validated on after each epoch, or None."""
        return getattr(self.datasets, self.validated) if self.validated else None

    def through(self, last: str) -> "Build":
        """Run every step not yet run, in order, up to and including `last`."""
        for step in STEPS[:STEPS.index(last) + 1]:
            if step not in self.done:
                getattr(self, f"_{step}")()
                self.done.append(step)
        return self

    def callbacks(self, run_dir) -> list:
        """The spec's Keras callbacks, their files inside `run_dir` (a `RunDir`)."""
        return get_callbacks(self.sections.train.callbacks, self.spec, run_dir)

    def _devices(self):
        self.setup = setup_devices(self.sections.device)  # before any other TensorFlow op
        check_batch_stages(self.sections.data, self.setup)
        if not self.quiet:
            print(self.setup.summary, flush=True)

    def _seed(self):
        if self.sections.seed is not None:
            keras.utils.set_random_seed(self.sections.seed)

    def _determinism(self):
        # Deterministic ops on request; off again otherwise, as the setting is process-wide.
        if self.sections.train.deterministic:
            tf.config.experimental.enable_op_determinism()
        else:
            disable_op_determinism()

    def _datasets(self):
        build = lambda: build_datasets(self.spec, learned=self._learned)  # noqa: E731
        self.datasets = self._shared.datasets(self.spec, build) if self._shared is not None else build()
        self.validated = self.datasets.validated_split(self.spec)
        self._collect(lambda: check_class_weight(self.sections.train, self.datasets.info))
        if self._given_model is None:  # a model to train (run, plan), not a saved one to evaluate
            self._collect(lambda: check_steps_per_epoch(self.sections.train, self.datasets.train))

    def _model(self):
        if self._given_model is not None:
            self.model = self._collect(self._given_model)
            return
        model_config = substitute_metadata(self.sections.model.as_dict(), self.datasets.info, self.spec, ("model",))
        with self.setup.strategy.scope():
            adapter = Adapter(model_config, self.spec, self.datasets.train, resume_from=self._resume_from)
            self.model = self._collect(lambda: build_model(model_config, self.spec, seed=self.sections.seed or 0,
                                                           adapter=adapter))
            self.adapted = adapter.records

    def _outputs(self):
        if self.model is None:
            return
        with self.setup.strategy.scope():
            resolved = self._collect(lambda: resolve_outputs(self.sections.train, self.spec, self.model,
                                                             self.datasets.train.element_spec))
        self.loss, self.metrics = resolved or (None, None)

    def _optimizer(self):
        with self.setup.strategy.scope():
            self.optimizer = self._collect(lambda: get_optimizer(self.sections.train.optimizer, self.spec))

    def _loss(self):
        if self.loss is None:
            return
        with self.setup.strategy.scope():
            self.loss_object = self._collect(lambda: check_loss_fits(self.loss, self.model,
                                                                     self.datasets.train.element_spec, self.spec))

    def _metrics(self):
        if self.metrics is None or self.loss_object is None:
            return
        with self.setup.strategy.scope():
            self._collect(lambda: check_metrics_fit(self.metrics, self.model, self.datasets.train.element_spec,
                                                    self.spec))


def collect_into(errors: list):
    """A `collect` for `Build` that keeps each SpecError (every one of a SpecErrors) in `errors`."""
    def collect(step):
        try:
            return step()
        except SpecError as e:
            errors.extend(getattr(e, "errors", [e]))
            return None
    return collect


def restored_model(run_dir, spec):
    """The model a run saved: a Keras model, or a tf.Module SavedModel with the outputs the spec names."""
    model = load_model(Path(run_dir))
    if is_keras(model):
        return model
    return Restored(model, declared_output_names(spec.sections.model.as_dict()))


class Restored(tf.Module):
    """A reloaded tf.Module SavedModel as a module the custom loop can evaluate.

    Evaluation needs only the forward pass: the variables stay inside the loaded object.
    """

    def __init__(self, loaded, output_names=()):
        super().__init__(name="restored")
        self._loaded = loaded
        self.output_names = tuple(output_names)  # a Keras model's several outputs come as a list

    def __call__(self, x):
        return self._loaded(x)
