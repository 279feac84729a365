"""The run's tables, grown at every epoch end and rewritten (atomically) when the run says.

history.json/csv, trajectories.json/csv and metrics.json hold the epochs done so far
whenever they are written: at least every second of training, with every checkpoint, and
as the run ends however it ends (a SIGKILL loses the epochs since the last write). A
resumed run starts from the tables of the run it continues, cut at the epoch its
checkpoint holds.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.outputs.files import write_json
from runner.outputs.history import write_history, write_trajectories


class EpochLog:
    """history (`{"loss": [...], ...}`) and trajectories (`{"w": [initial, ...]}`) of a run.

    Args:
        run_dir: where the tables are written.
        history, trajectories: the epochs before this run's first (resume), else empty.
        validated: the split the `val_` values come from (`validation` or `test`).
    """

    def __init__(self, run_dir: Path, history: dict | None = None, trajectories: dict | None = None,
                 validated: str = "validation"):
        self.run_dir = Path(run_dir)
        self.validated = validated
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.trajectories = {k: list(v) for k, v in (trajectories or {}).items()}
        self.written = self.epochs  # epochs the files hold

    @property
    def epochs(self) -> int:
        return len(self.history.get("loss", []))

    def start(self, scalars: dict) -> None:
        """The scalar variables before the first epoch (a fresh run's trajectory start)."""
        for name, value in scalars.items():
            self.trajectories.setdefault(name, [value])

    def record(self, logs: dict, scalars: dict | None = None) -> None:
        """Append one epoch's logs (and scalar variables)."""
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        for name, value in (scalars or {}).items():
            self.trajectories.setdefault(name, []).append(float(value))

    def write(self) -> None:
        """Rewrite the tables with every epoch recorded."""
        # Not fsynced: rewritten during the run, and written durably once more as it ends.
        self.written = self.epochs
        write_history(self.run_dir, self.history, durable=False)
        write_trajectories(self.run_dir, self.trajectories, durable=False)
        write_json(self.run_dir / "metrics.json", last_epoch_metrics(self.history, self.validated), durable=False)


def last_epoch_metrics(history: dict, validated: str = "validation") -> dict:
    """`{"train": {...}, validated: {...}}` from the last epoch of a history."""
    metrics = {"train": {k: v[-1] for k, v in history.items() if not k.startswith("val_") and v}}
    validation = {k[4:]: v[-1] for k, v in history.items() if k.startswith("val_") and v}
    if validation:
        metrics[validated] = validation
    return metrics


def previous_tables(run_dir: Path, epochs: int) -> tuple[dict, dict]:
    """history and trajectories of an earlier run, cut to its first `epochs` epochs.

    Raises:
        ValueError: the history holds fewer epochs than `epochs` (message names the file).
    """
    run_dir = Path(run_dir)
    history = _read_json(run_dir / "history.json")
    found = len(history.get("loss", []))
    if found < epochs:
        raise ValueError(f"{run_dir / 'history.json'}: holds {found} epochs, but the checkpoint is at epoch {epochs}")
    trajectories = _read_json(run_dir / "trajectories.json")
    return ({k: v[:epochs] for k, v in history.items()},
            {k: v[: epochs + 1] for k, v in trajectories.items()})


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
