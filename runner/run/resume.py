"""`pipe run SPEC --resume RUN_DIR`: what may be resumed, checked before anything is trained.

A resumed run continues the whole history of the run it resumes, from that run's last
checkpoint (whatever epoch it holds), and trains the epochs after it exactly as the
uninterrupted run would have. So the spec must be the one that run trained (only the
number of epochs, outputs and reporting may change), the checkpoint must be readable, and
there must be epochs left to train.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from runner.outputs.epochs import previous_tables
from runner.outputs.status import read_status
from runner.spec.errors import SpecError, SpecErrors
from runner.spec.schema import NO_DEFAULT, default_at
from runner.train import checkpoint as checkpoints

# Keys a resumed run may change: they do not change what is trained.
MAY_CHANGE = (
    ("name",), ("train", "epochs"), ("train", "verbose"), ("train", "report"), ("train", "steps_per_execution"),
    ("outputs",),
    ("device", "placement"), ("device", "visible_devices"), ("device", "memory_growth"),
    ("device", "memory_limit_mb"),
)


@dataclass
class Resume:
    """The run to continue: its last checkpoint, the epochs it holds and their tables."""

    run_dir: Path
    checkpoint: str
    epoch: int
    history: dict
    trajectories: dict


def prepare_resume(spec, run_dir) -> Resume:
    """Check that `run_dir` can be resumed with `spec`, and read what the new run continues.

    Raises:
        SpecError: no or an unreadable checkpoint, nothing left to train, unreadable tables.
        SpecErrors: the spec differs from the run's own, one located error per difference.
    """
    run_dir = Path(run_dir)
    previous = checkpoints.previous_run(run_dir)
    check_same_spec(spec, run_dir)
    train = spec.sections.train
    epochs = train.total_epochs
    # A run stopped after its last epoch (while evaluating or writing) resumes to finish:
    # no epoch to train, then the evaluation and files it had not written.
    declared = "its phases" if train.phases else f"train.epochs={epochs}"
    if previous.epoch > epochs:
        raise SpecError(f"nothing to resume: the run's last checkpoint ({previous.checkpoint}) holds "
                        f"{previous.epoch} epochs, more than the {epochs} of {declared}; "
                        f"set {_epochs_key(train)} above {previous.epoch} to train on", file=run_dir)
    if previous.epoch == epochs and read_status(run_dir).status == "completed":
        raise SpecError(f"nothing to resume: the run {_status(run_dir)} with all {epochs} epochs of "
                        f"{declared} in its last checkpoint ({previous.checkpoint}); "
                        f"set a larger {_epochs_key(train)} to train on", file=run_dir)
    try:
        history, trajectories = previous_tables(run_dir, previous.epoch)
    except ValueError as e:
        raise SpecError(str(e)) from None
    return Resume(run_dir, previous.checkpoint, previous.epoch, history, trajectories)


def check_same_spec(spec, run_dir: Path) -> None:
    """Refuse a spec that trains something else than the run in `run_dir` did."""
    saved = run_dir / "spec.yaml"
    try:
        before = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"cannot read the spec the run trained: {e}", file=saved) from None
    now = yaml.safe_load(spec.as_yaml())  # as the run dir stores it
    errors = [
        spec.error(path, f"{_show(new)} here, but {_show(old)} in the run being resumed ({saved}); "
                         "a resumed run trains what its run trained (train.epochs, steps_per_execution, "
                         "outputs and reporting may change)")
        for path, old, new in differences(before, now)
        if not _last_phase_epochs(path, now) and not _default_written_out(path, old, new)
    ]
    if errors:
        raise SpecErrors(errors)


def _default_written_out(path, old, new) -> bool:
    """One spec writes the schema's default where the other leaves the key out: the same run."""
    if _ABSENT not in (old, new):
        return False
    written = new if old is _ABSENT else old
    default = default_at(path)
    return default is not NO_DEFAULT and written == default and isinstance(written, bool) == isinstance(default, bool)


def _epochs_key(train) -> str:
    return f"train.phases[{len(train.phases) - 1}].epochs" if train.phases else "train.epochs"


def _last_phase_epochs(path, doc) -> bool:
    """The last phase's epochs may change, as train.epochs may without phases."""
    phases = (doc.get("train") or {}).get("phases") or []
    return path == ("train", "phases", len(phases) - 1, "epochs")


def differences(old, new, path=()):
    """Every (path, old value, new value) where two documents differ, skipping MAY_CHANGE keys."""
    if any(path[: len(key)] == key for key in MAY_CHANGE):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            yield from differences(old.get(key, _ABSENT), new.get(key, _ABSENT), path + (key,))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, path + (i,))
    elif old != new or isinstance(old, bool) != isinstance(new, bool):
        yield path, old, new


_ABSENT = object()


def _show(value) -> str:
    if value is _ABSENT:
        return "absent"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= 80 else text[:77] + "..."


def _status(run_dir: Path) -> str:
    try:
        return f"is {read_status(run_dir).status},"
    except (OSError, ValueError):
        return "has ended"
