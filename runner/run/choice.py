"""Which engine trains a run, as an `Engine` of `runner.run.engines` ready to train.

The decision itself (fused or not, and why) is `runner.train.engine.choose_engine`; this
module gives it what it weighs (the loop, the callbacks, whether the splits fit in memory)
and returns the engine that implements it.
"""

from __future__ import annotations

from runner.run.engines import Engine
from runner.run.fused import FusedEngine, plan_data, replicas_reason, xla_reason
from runner.models.string_front import string_front
from runner.run.loops import CustomEngine, FitEngine
from runner.train.engine import choose_engine

_LOOPS = {"fit": FitEngine, "custom": CustomEngine}


def training_loop(train, setup, quiet: bool) -> str:
    """The tf.data loop the run uses: `train.loop`, or custom where Keras fit cannot run."""
    loop = train.loop
    if loop == "fit" and setup.strategy_name == "multi_worker_mirrored":
        # Keras 3 Model.fit does not train under MultiWorkerMirroredStrategy
        # (keras-team/keras#20585); the custom loop runs the same steps there.
        loop = "custom"
        if not quiet:
            print("loop: custom (Keras fit does not run under multi_worker_mirrored)", flush=True)
    return loop


def choose_training(spec, setup, datasets, loop: str, callbacks, profiling=False, model=None) -> Engine:
    """The engine for this run: fused when `train.engine` asks for it and it can run, else
    the tf.data loop `loop` (always under `profiling`: `pipe run --profile` times its steps).
    A `model` that takes strings into fixed lookups trains on the splits held as their output.

    Raises:
        SpecError: `train.engine: fused` on a spec it cannot run, located at the key.
    """
    requested = spec.sections.train.engine
    tf_data = _LOOPS[loop]
    if profiling and requested != "keras":
        return tf_data("keras", f"{loop}; not fused: pipe run --profile times tf.data steps")
    if requested == "keras":
        choice = choose_engine(spec, setup=setup, loop=loop, callbacks=[], data_reason="", nbytes=None)
        return tf_data(choice.name, choice.reason)
    front = string_front(model) if model is not None else (None, "")
    plans, reason = plan_data(spec, datasets, front)
    reason = reason or replicas_reason(plans, setup)
    nbytes = sum(p.nbytes for p in plans.values()) if not reason else None
    choice = choose_engine(spec, setup=setup, loop=loop, callbacks=callbacks, data_reason=reason, nbytes=nbytes)
    if choice.name != "fused":
        return tf_data(choice.name, choice.reason)
    held = front[0] if any(p.encode is not None for p in plans.values()) else None
    reason = choice.reason if held is None else f"{choice.reason}; strings held as looked up by {held.names}"
    without_xla = xla_reason(plans, setup)
    reason = f"{reason}; {without_xla}" if without_xla else reason
    return FusedEngine(choice.name, reason, plans=plans, loop=loop, front=held, xla=not without_xla)
