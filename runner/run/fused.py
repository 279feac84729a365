"""The fused engine of `pipe run`: the splits in memory, whole epochs in one graph call.

`plan_data` says whether the splits can be held in memory (the choice, `runner.run.choice`,
weighs it); `FusedEngine` trains with `runner.train.fused.FusedLoop`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf

from runner.data.in_memory import InMemoryPlan, plan_in_memory
from runner.models import is_keras
from runner.run.engines import TrainingContext, TrainingResult
from runner.train import checkpoint as checkpoints
from runner.train.class_weight import class_weights
from runner.train.engine import EngineChoice
from runner.train.fused import FusedLoop, InMemoryData
from runner.train.multi_output import loop_metrics


@dataclass
class FusedEngine(EngineChoice):
    """Train with `FusedLoop` on the splits in memory; evaluate held-out splits in memory
    when they fit there, else through tf.data."""

    plans: dict = field(default_factory=dict, repr=False)  # role (train, validation) -> InMemoryPlan
    front: object = None  # the model's lookups of its string inputs, when the splits hold their output
    loop: str = "fit"  # the tf.data loop it stands in for (its progress bar follows that loop's)
    xla: bool = True  # False: jit_compile asked for, but the training batches' augmentation cannot compile

    def train(self, context: TrainingContext) -> TrainingResult:
        if not self.xla:  # fused without XLA (the engine line says why), and recorded so
            context.setup.jit_compile = False
            context.setup.manifest["xla"] = False
        return self._train(context)

    def _train(self, context: TrainingContext) -> TrainingResult:
        c, train, outputs = context, context.train, context.outputs
        model, datasets, setup = c.model, c.datasets, c.setup
        splits = {"train": "train", "validation": datasets.validated_split(c.spec)}
        data = {role: _held(datasets, splits[role], plan, c.seed, setup, self.front)
                for role, plan in self.plans.items()}
        with setup.strategy.scope():
            fused = FusedLoop(
                model, loss=c.loss, optimizer=c.optimizer,
                metrics=loop_metrics(c.metrics, model, datasets.train.element_spec, c.loss),
                element_spec=datasets.train.element_spec, setup=setup,
                class_weight=class_weights(train, datasets.info), callbacks=c.callbacks,
                verbose=_verbose(c.quiet, self.loop, train), report=train.report.as_dict(), spec=c.spec,
                train_data=data["train"], validation_data=data.get("validation"),
                forward=None if self.front is None else self.front.body,
            )
            if is_keras(model):
                # Sets model.optimizer for callbacks (ReduceLROnPlateau, ...) and model.keras.
                model.compile(optimizer=fused.optimizer, loss=getattr(c.loss, "per_output", c.loss),
                              jit_compile=bool(setup.jit_compile))
        checkpoint = checkpoints.epoch_checkpoint(model, fused.optimizer, c.run_dir, outputs.checkpoints)
        previous = c.progress.previous
        initial_epoch = checkpoints.restore(checkpoint, previous) if previous is not None else 0
        c.progress.log.start(fused.scalar_values())
        # Within one graph call of several epochs only the last one's state exists to checkpoint.
        within_call = c.progress.epoch_end(None, within_call=True)
        saving = checkpoints.saving(checkpoint, outputs.checkpoints)
        if checkpoints.saves_every_epoch(outputs.checkpoints):  # each epoch's state saved
            fused.one_epoch_per_call = True
        if c.progress.pruning:  # a sweep's pruner may stop the run after any epoch
            fused.one_epoch_per_call = True
        call_end = c.progress.epoch_end(saving, train.epochs, model)
        trained = fused.fit(epochs=train.epochs, initial_epoch=initial_epoch, quiet=c.quiet,
                            epoch_end=within_call, group_end=call_end)
        validated_on = datasets.validated_split(c.spec)

        def evaluate(dataset, split, result):
            if split == validated_on:  # already in memory
                return fused.evaluate_in_memory(data["validation"])
            return _evaluate(fused, c.spec, datasets, split, dataset, c.seed, setup, self.front)

        return TrainingResult(trained, evaluate)


def plan_data(spec, datasets, front=None) -> tuple[dict, str]:
    """In-memory plans of train and the validation split, or ({}, why one cannot be had).

    Args:
        front: `string_front(model)`: string features are held as its lookups' output.
            Plans made with a model's lookups (or with its reason for having none) belong
            to that model, and are not kept for a sweep's next trial.
    """
    if front is not None and (front[0] is not None or front[1]):
        return _plan_data(spec, datasets, front)
    return datasets.keep(("plans", datasets.validated_split(spec)), lambda: _plan_data(spec, datasets))


def _plan_data(spec, datasets, front=None) -> tuple[dict, str]:
    plans = {}
    for role, split in (("train", "train"), ("validation", datasets.validated_split(spec))):
        if split is None:
            continue
        plan, reason = plan_in_memory(spec, datasets, split, front)
        if plan is None:
            return {}, reason if role == "train" else f"validation on {split}: {reason}"
        element = plan.prefix.element_spec
        if not (isinstance(element, tuple) and len(element) == 2):
            return {}, f"data.{split}: elements without labels"
        plans[role] = plan
    return plans, ""


def replicas_reason(plans: dict, setup) -> str:
    """Why several replicas cannot run these plans ("" when they can): each replica would
    set the augmentation's seed states, which all replicas share."""
    augment = getattr(plans.get("train"), "augment", None)
    if augment is None or setup.num_replicas == 1:
        return ""
    return f"{augment.where}: a 'map' stage with augment ops under {setup.num_replicas} replicas"


def xla_reason(plans: dict, setup) -> str:
    """Why the fused steps run without XLA although jit_compile asks for it ("" when they
    need not): the training batches' augmentation has layers XLA cannot compile. The
    epoch then runs uncompiled, still in one graph call, rather than on the tf.data path."""
    augment = getattr(plans.get("train"), "augment", None)
    if augment is None or not setup.jit_compile or setup.num_replicas > 1:
        return ""
    refused = augment.xla_refusals
    if not refused:
        return ""
    return f"xla off: {augment.where} augments with {', '.join(refused)}, which XLA cannot compile"


def _in_memory(plan: InMemoryPlan, seed, setup) -> InMemoryData:
    """The plan's tensors, on the one device that trains (the host under mirrored)."""
    x, y = plan.materialise()
    if setup.num_replicas == 1:
        with tf.device(_training_device(setup)):
            x, y = tf.nest.map_structure(tf.identity, (x, y))
    shuffle_seed = plan.shuffle_seed if plan.shuffle_seed is not None else (seed or 0)
    return InMemoryData(x, y, batch_size=plan.batch_size, drop_remainder=plan.drop_remainder,
                        shuffle=plan.shuffle, seed=shuffle_seed,
                        reshuffle_each_iteration=plan.reshuffle_each_iteration,
                        batch_map=plan.batch_map, element_spec=plan.prefix.element_spec, augment=plan.augment)


def _training_device(setup) -> str | None:
    try:
        return setup.strategy.extended.worker_devices[0]
    except (AttributeError, NotImplementedError, RuntimeError):
        return None  # the default strategy: where TensorFlow places ops by default


def _evaluate(fused, spec, datasets, split, dataset, seed, setup, front=None) -> dict:
    """The split in memory when it can be held there (one graph call), else through tf.data
    (looked up by the model's string lookups first when the steps take their output)."""
    if front is None:
        plan, _ = datasets.keep(("plan", split), lambda: plan_in_memory(spec, datasets, split))
    else:
        plan, _ = plan_in_memory(spec, datasets, split, (front, ""))
    budget = spec.sections.train.fused_memory_mb
    if plan is not None and plan.nbytes > budget * 2**20:
        plan = None
    element = plan.prefix.element_spec if plan is not None else None
    if plan is None or not (isinstance(element, tuple) and len(element) == 2):
        if front is not None:
            dataset = dataset.map(lambda x, y: (front.encode(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        return fused.evaluate(dataset)
    return fused.evaluate_in_memory(_held(datasets, split, plan, seed, setup, front))


def _held(datasets, split, plan, seed, setup, front) -> InMemoryData:
    """`split` in memory, made once for these datasets (a sweep's next trial reuses it)
    unless it holds what this model's string lookups gave."""
    if front is not None:
        return _in_memory(plan, seed, setup)
    return datasets.keep(("in memory", split, seed), lambda: _in_memory(plan, seed, setup))


def _verbose(quiet, loop, train) -> int:
    """As the tf.data loops: `auto` is a bar, except for a custom loop with an epoch report."""
    verbose = 0 if quiet else train.verbose
    if verbose != "auto":
        return int(verbose)
    return 0 if loop == "custom" and train.report.epoch else 1

