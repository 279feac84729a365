"""What a training loop returns, the same for `fit` and the custom loop."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainResult:
    """What a training loop produced."""

    history: dict
    trajectories: dict = field(default_factory=dict)  # scalar variable -> [initial, epoch 1, ...]
    epochs_run: int = 0
    predictions: tuple | None = None  # (labels, predictions) of the test split's final evaluation
