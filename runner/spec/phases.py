"""Training phases (`train.phases`) and warm starts (`model.init_from`), read from the spec.

A run with phases trains them one after the other: each its `epochs`, a fresh optimizer
(its own `optimizer`, or a fresh `train.optimizer`, with its `learning_rate` when given) and
the layers its `trainable` names. Epochs are numbered on across phases, so epoch 3 of a run
of phases of 2 and 2 epochs is the first of the second phase. A run without phases is one
phase of `train.epochs` epochs with `train.optimizer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from runner.spec.errors import SpecError
from runner.spec.sections import TrainConfig


@dataclass(frozen=True)
class Phase:
    """One phase: its epochs [start, end) in the run's numbering, optimizer and trainable layers."""

    index: int
    start: int
    end: int
    optimizer: object  # the identifier of its optimizer, or None: train.optimizer's
    learning_rate: object = None  # replaces the optimizer's learning rate when given
    trainable: dict = field(default_factory=dict)  # layer name -> True, False or N
    name: str = ""

    @property
    def path(self) -> tuple:
        return ("train", "phases", self.index)


def phases_of(train) -> list[Phase]:
    """The phases of `train` (one phase of `train.epochs` when it declares none).

    `train` is the `TrainConfig`, or the `train:` mapping as the spec writes it.
    """
    train = train if isinstance(train, TrainConfig) else TrainConfig.of(train)
    if not train.phases:
        return [Phase(0, 0, int(train.epochs), train.optimizer)]
    phases, start = [], 0
    for i, phase in enumerate(train.phases):
        end = start + int(phase["epochs"])
        phases.append(Phase(i, start, end, phase.get("optimizer", train.optimizer),
                            phase.get("learning_rate"), dict(phase.get("trainable") or {}),
                            phase.get("name") or f"phase {i + 1}"))
        start = end
    return phases


def total_epochs(train) -> int:
    """The run's epochs: `train.epochs`, or the sum of its phases' epochs (`train` a
    `TrainConfig`, or the `train:` mapping)."""
    return (train if isinstance(train, TrainConfig) else TrainConfig.of(train)).total_epochs


def phase_at(phases: list[Phase], epoch: int) -> Phase:
    """The phase that trains `epoch` (0-based); the last phase past the end."""
    return next((p for p in phases if epoch < p.end), phases[-1])


def phase_errors(spec) -> list[SpecError]:
    """`train.phases` beside the keys it replaces or cannot go with."""
    train = spec.get("train", default={})
    phases = train.get("phases") if isinstance(train, dict) else None
    if not isinstance(phases, list) or not phases:
        return []
    errors = []
    if "epochs" in train:
        errors.append(spec.error(("train", "epochs"), "with train.phases, each phase gives its epochs (the run "
                                                      "trains their sum): remove train.epochs"))
    if train.get("initial_epoch"):
        errors.append(spec.error(("train", "initial_epoch"), "initial_epoch cannot go with train.phases (phases "
                                                             "number their epochs from 0)"))
    for i, phase in enumerate(phases):
        if isinstance(phase, dict) and "optimizer" in phase and "learning_rate" in phase:
            errors.append(spec.error(("train", "phases", i, "learning_rate"), "give a phase either its own "
                                     "optimizer or a learning_rate for train.optimizer, not both"))
    return errors


def init_from_run(model: dict) -> tuple[str | None, list | None]:
    """`model.init_from` as (run directory as written, layer names or None for all)."""
    value = model.get("init_from") if isinstance(model, dict) else None
    if isinstance(value, dict):
        return value.get("run"), value.get("layers")
    return value, None


def init_from_errors(spec) -> list[SpecError]:
    """`model.init_from` that is, when it exists, no completed run directory."""
    run, _ = init_from_run(spec.get("model", default={}))
    if not isinstance(run, str) or not run:
        return []
    path = ("model", "init_from") + (("run",) if isinstance(spec.get("model", "init_from"), dict) else ())
    reason = run_dir_problem(spec.resolve_path(run))
    return [spec.error(path, reason, at_value=True)] if reason and "no such" not in reason else []


def run_dir_problem(directory) -> str | None:
    """Why `directory` is not a completed run to start from, or None."""
    if not directory.exists():
        return f"no such run directory: {directory}"
    manifest = directory / "manifest.json"
    if not directory.is_dir() or not manifest.is_file():
        return f"{directory} is not a pipe run directory (no manifest.json)"
    try:
        status = json.loads(manifest.read_text()).get("status")
    except (OSError, ValueError) as e:
        return f"cannot read {manifest}: {e}"
    if status != "completed":
        return f"the run in {directory} is {status}: init_from takes the weights of a completed run"
    return None
