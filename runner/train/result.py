"""What a training loop returns, the same for `fit` and the custom loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras


@dataclass
class TrainResult:
    """What a training loop produced."""

    history: dict
    trajectories: dict = field(default_factory=dict)  # scalar variable -> [initial, epoch 1, ...]
    epochs_run: int = 0
    predictions: tuple | None = None  # (labels, predictions) of the test split's final evaluation


def final_train_metrics(history: dict, callbacks, initial_epoch: int) -> dict:
    """The last epoch's training metrics, or the best epoch's when EarlyStopping restored its weights."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights \
                and callback.best_weights is not None:
            row = callback.best_epoch - initial_epoch
            if 0 <= row < len(history.get("loss", [])):
                return {k: v[row] for k, v in history.items() if not k.startswith("val_") and len(v) > row}
    return {k: v[-1] for k, v in history.items() if not k.startswith("val_") and v}
