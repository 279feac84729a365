"""`pipe run` with the fused engine: the choice of engine, the splits in memory, training.

`choose_training` decides (see `runner.train.engine`) and, when the fused engine runs,
returns the function that trains with it, in the shape of `runner.run.loops.train_fit`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from runner.data.in_memory import InMemoryPlan, plan_in_memory
from runner.models import is_keras
from runner.models.identifiers import get_callbacks
from runner.outputs import history
from runner.train import checkpoint as checkpoints
from runner.train.result import evaluate_held_out, final_train_metrics
from runner.train.engine import DEFAULT_MEMORY_MB, Engine, choose_engine
from runner.train.fused import FusedLoop, InMemoryData
from runner.train.multi_output import loop_metrics
from runner.train.class_weight import class_weights


@dataclass
class TrainingChoice:
    engine: Engine
    train: Callable | None  # the fused training function, or None for the tf.data loops


def choose_training(spec, setup, datasets, loop: str, run_dir, profiling=False) -> TrainingChoice:
    """The engine for this run and, when fused, its training function (never under
    `profiling`: `pipe run --profile` times the tf.data loops' steps).

    Raises:
        SpecError: `train.engine: fused` on a spec it cannot run, located at the key.
    """
    train_config = spec.doc["train"]
    if profiling and train_config.get("engine", "keras") != "keras":
        return TrainingChoice(Engine("keras", f"{loop}; not fused: pipe run --profile times tf.data steps"), None)
    if train_config.get("engine", "keras") == "keras":
        return TrainingChoice(choose_engine(spec, setup=setup, loop=loop, callbacks=[], data_reason="",
                                            nbytes=None), None)
    plans, reason = _plans(spec, datasets)
    callbacks = get_callbacks(train_config.get("callbacks"), spec, run_dir)
    nbytes = sum(p.nbytes for p in plans.values()) if not reason else None
    engine = choose_engine(spec, setup=setup, loop=loop, callbacks=callbacks, data_reason=reason, nbytes=nbytes)
    if engine.name != "fused":
        return TrainingChoice(engine, None)
    return TrainingChoice(engine, functools.partial(_train_fused, plans, callbacks, loop))


def _plans(spec, datasets) -> tuple[dict, str]:
    """In-memory plans of train and the validation split, or ({}, why one cannot be had)."""
    plans = {}
    for role, split in (("train", "train"), ("validation", datasets.validated_split(spec))):
        if split is None:
            continue
        plan, reason = plan_in_memory(spec, datasets, split)
        if plan is None:
            return {}, reason if role == "train" else f"validation on {split}: {reason}"
        element = plan.prefix.element_spec
        if not (isinstance(element, tuple) and len(element) == 2):
            return {}, f"data.{split}: elements without labels"
        plans[role] = plan
    return plans, ""


def _in_memory(plan: InMemoryPlan, seed, setup) -> InMemoryData:
    """The plan's tensors, on the one device that trains (the host under mirrored)."""
    x, y = plan.materialise()
    if setup.num_replicas == 1:
        with tf.device(_training_device(setup)):
            x, y = tf.nest.map_structure(tf.identity, (x, y))
    shuffle_seed = plan.shuffle_seed if plan.shuffle_seed is not None else (seed or 0)
    return InMemoryData(x, y, batch_size=plan.batch_size, drop_remainder=plan.drop_remainder,
                        shuffle=plan.shuffle, seed=shuffle_seed,
                        reshuffle_each_iteration=plan.reshuffle_each_iteration)


def _training_device(setup) -> str | None:
    try:
        return setup.strategy.extended.worker_devices[0]
    except (AttributeError, NotImplementedError, RuntimeError):
        return None  # the default strategy: where TensorFlow places ops by default


def _train_fused(plans, callbacks, loop, spec, setup, datasets, validation, model, loss, optimizer, metrics,
                 run_dir, quiet, progress):
    """Train with `FusedLoop`, then evaluate each held-out split; as `runner.run.loops.train_custom`."""
    train_config = spec.doc["train"]
    output_config = spec.doc.get("outputs") or {}
    seed = spec.doc.get("seed")
    data = {role: _in_memory(plan, seed, setup) for role, plan in plans.items()}
    with setup.strategy.scope():
        fused = FusedLoop(
            model, loss=loss, optimizer=optimizer,
            metrics=loop_metrics(metrics, model, datasets.train.element_spec, loss),
            element_spec=datasets.train.element_spec, setup=setup,
            class_weight=class_weights(train_config, datasets.info), callbacks=callbacks,
            verbose=_verbose(quiet, loop, train_config), report=train_config.get("report"), spec=spec,
            train_data=data["train"], validation_data=data.get("validation"),
        )
        if is_keras(model):
            # Sets model.optimizer for callbacks (ReduceLROnPlateau, ...) and model.keras.
            model.compile(optimizer=fused.optimizer, loss=getattr(loss, "per_output", loss),
                          jit_compile=bool(setup.jit_compile))
    checkpoint = checkpoints.epoch_checkpoint(model, fused.optimizer, run_dir, output_config.get("checkpoints"))
    initial_epoch = checkpoints.restore(checkpoint, progress.previous) if progress.previous is not None else 0
    progress.log.start(fused.scalar_values())
    # Within one graph call of several epochs only the last one's state exists to checkpoint.
    within_call = progress.epoch_end(None, within_call=True)
    saving = checkpoints.saving(checkpoint, output_config.get("checkpoints"))
    if checkpoints.saves_every_epoch(output_config.get("checkpoints")):  # each epoch's state saved
        fused.one_epoch_per_call = True
    if progress.pruning:  # a sweep's pruner may stop the run after any epoch
        fused.one_epoch_per_call = True
    call_end = progress.epoch_end(saving, train_config["epochs"], model)
    result = fused.fit(epochs=train_config["epochs"], initial_epoch=initial_epoch, quiet=quiet,
                       epoch_end=within_call, group_end=call_end)
    result = progress.result(result)
    if output_config.get("tensorboard"):
        history.write_tensorboard(run_dir, result.history)
    validated_on = datasets.validated_split(spec)

    def evaluate(dataset, split):
        if split == validated_on:  # already in memory
            return fused.evaluate_in_memory(data["validation"])
        return _evaluate(fused, spec, datasets, split, dataset, seed, setup)

    final = final_train_metrics(result.history, callbacks, 0)
    return result, evaluate_held_out(spec, datasets, validation, result, final, evaluate)


def _evaluate(fused, spec, datasets, split, dataset, seed, setup) -> dict:
    """The split in memory when it can be held there (one graph call), else through tf.data."""
    plan, _ = plan_in_memory(spec, datasets, split)
    budget = spec.doc["train"].get("fused_memory_mb", DEFAULT_MEMORY_MB)
    if plan is not None and plan.nbytes > budget * 2**20:
        plan = None
    element = plan.prefix.element_spec if plan is not None else None
    if plan is None or not (isinstance(element, tuple) and len(element) == 2):
        return fused.evaluate(dataset)
    return fused.evaluate_in_memory(_in_memory(plan, seed, setup))


def _verbose(quiet, loop, train_config) -> int:
    """As the tf.data loops: `auto` is a bar, except for a custom loop with an epoch report."""
    verbose = 0 if quiet else train_config.get("verbose", "auto")
    if verbose != "auto":
        return int(verbose)
    return 0 if loop == "custom" and (train_config.get("report") or {}).get("epoch") else 1

