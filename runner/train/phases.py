"""What each training phase sets before it trains: which layers train, and a fresh optimizer.

Each phase starts from the trainable flags the model section built (a backbone's
`trainable: false` or `trainable_layers`), then applies its own `trainable`: a layer name
mapped to true, false, or N (only the last N layers of a nested model such as a
keras.applications backbone train). So a phase's layers do not depend on the phases
before it, and a resumed run sets them as the uninterrupted one did.
"""

from __future__ import annotations

import math

import keras

from runner.models.identifiers import get_optimizer, get_schedule, to_keras_config
from runner.spec.phases import Phase, phase_at, phases_of


class TrainableFlags:
    """The model's trainable flags as built, restored before each phase applies its own."""

    def __init__(self, model):
        self.model = model
        layers = model._flatten_layers(include_self=False, recursive=True) if isinstance(model, keras.Model) else []
        self.flags = [(layer, layer.trainable) for layer in layers]  # outer layers before inner ones

    def apply(self, phase: Phase, spec) -> None:
        """Set the flags `phase` asks for (the built ones for layers it does not name).

        Raises:
            SpecError: at the phase's trainable: an unknown layer, or N on a layer
                without inner layers.
        """
        if not phase.trainable:
            if self.flags:
                self._restore()
            return
        if not isinstance(self.model, keras.Model):
            raise spec.error((*phase.path, "trainable"), "trainable names Keras layers; a module model has none")
        self._restore()
        layers = {layer.name: layer for layer in self.model.layers}
        for name, value in phase.trainable.items():
            where = (*phase.path, "trainable", name)
            layer = layers.get(name)
            if layer is None:
                raise spec.error(where, f"no layer named {name!r} in the model (its layers: {', '.join(layers)})")
            if isinstance(value, bool):
                layer.trainable = value
                continue
            inner = getattr(layer, "layers", None)
            if not inner:
                raise spec.error(where, f"{value}: layer {name!r} has no inner layers to count; give true or false",
                                 at_value=True)
            layer.trainable = True
            cut = len(inner) - int(value)
            for i, sub in enumerate(inner):
                sub.trainable = i >= cut

    def _restore(self) -> None:
        for layer, flag in self.flags:
            layer.trainable = flag


def phase_optimizer(phase: Phase, spec):
    """A fresh optimizer for `phase`: its own, or train.optimizer with its learning_rate."""
    if phase.learning_rate is None:
        declared = spec.sections.train.phases
        own = phase.index < len(declared) and declared[phase.index].get("optimizer") is not None
        path = (*phase.path, "optimizer") if own else ("train", "optimizer")
        return get_optimizer(phase.optimizer, spec, path)
    path = ("train", "phases", phase.index, "learning_rate")
    rate = phase.learning_rate
    if isinstance(rate, (dict, str)):
        rate = get_schedule(rate, spec, path)
    config = to_keras_config(phase.optimizer)
    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    config = {**config, "config": {**(config.get("config") or {}), "learning_rate": rate}}
    return get_optimizer(config, spec, path)


def phase_line(phase: Phase, optimizer, model) -> str:
    """`phase 2/2 (fine-tune): epochs 3-4, Adam(learning_rate=1e-05), 12,345 trainable parameters`."""
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate_text = f"learning_rate={type(rate).__name__}"
    else:
        rate_text = f"learning_rate={float(optimizer.learning_rate):g}"
    count = _parameters(model)
    return (f"{phase.name}: epochs {phase.start + 1}-{phase.end}, {type(optimizer).__name__}({rate_text}), "
            f"{count:,} trainable parameters")


def describe_phases(model, spec) -> list[dict]:
    """Each phase of `train.phases` as it will train (its epochs, optimizer and trainable
    parameters), the model's flags left as built; [] without phases.

    Raises:
        SpecError: a phase naming a layer the model lacks, or an optimizer Keras refuses.
    """
    train = spec.sections.train
    if not train.phases:
        return []
    flags = TrainableFlags(model)
    described = []
    try:
        for phase in phases_of(train):
            flags.apply(phase, spec)
            optimizer = phase_optimizer(phase, spec)
            described.append({"name": phase.name, "epochs": [phase.start + 1, phase.end],
                              "optimizer": keras.optimizers.serialize(optimizer),
                              "trainable_parameters": _parameters(model),
                              "line": phase_line(phase, optimizer, model)})
    finally:
        flags.apply(Phase(0, 0, 0, None), spec)  # back to the flags as built
    return described


def phases_to_train(spec, model, optimizer, previous, setup, quiet):
    """Each phase left to train: (phase, its fresh optimizer, whether to restore the resumed
    run's checkpoint before it, whether to train it).

    `previous` is the `Resume` the run continues, or None. Before each phase its layers
    are set trainable or frozen. A resumed run restores its checkpoint into the phase it
    was saved in, with that phase's optimizer: a checkpoint saved at a phase's last epoch
    is restored into that phase, which trains no more, and the next phase starts with a
    fresh optimizer as in the uninterrupted run. Without `train.phases`, one phase with
    the run's optimizer (`optimizer`).
    """
    train = spec.sections.train
    phases = phases_of(train)
    declared = bool(train.phases)
    start = previous.epoch if previous is not None else 0
    first = phase_at(phases, start)
    if declared and start == first.start and first.index > 0:
        first = phases[first.index - 1]  # saved at the end of that phase, with its optimizer
    flags = TrainableFlags(model) if declared else None
    for phase in phases[first.index:]:
        trains = phase.end > start or phase is phases[-1]
        if declared:
            flags.apply(phase, spec)
            with setup.strategy.scope():
                optimizer = phase_optimizer(phase, spec)
            if not quiet and trains:
                print(phase_line(phase, optimizer, model), flush=True)
        yield phase, optimizer, previous is not None and phase is first, trains


def append_in_later_phases(callbacks) -> None:
    """After a phase trained: CSVLogger opens its file anew when each `fit` begins, so each
    phase's would replace the one before; the phases after the first append to it, one file
    with every epoch (its header written once)."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.CSVLogger):
            callback.append = True


def _parameters(model) -> int:
    """The number of trainable parameters (`model.trainable_variables`' sizes)."""
    return sum(math.prod(int(d) for d in v.shape) for v in getattr(model, "trainable_variables", []))
