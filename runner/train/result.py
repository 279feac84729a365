"""What a training loop returns, the same for `fit` and the custom loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from runner.spec.sections import section


@dataclass
class TrainResult:
    """What a training loop produced."""

    history: dict
    trajectories: dict = field(default_factory=dict)  # scalar variable -> [initial, epoch 1, ...]
    epochs_run: int = 0
    predictions: tuple | None = None  # (labels, predictions) of the test split's final evaluation


def finalize_weights(optimizer, variables, epochs: int) -> None:
    """What Keras `fit` does after its last epoch, for the loops that stand in for it: an
    optimizer with `use_ema` puts the moving averages of the weights in their place (the
    model then saved and evaluated)."""
    if epochs > 0 and isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer.finalize_variable_values(variables)


def final_train_metrics(history: dict, callbacks, initial_epoch: int) -> dict:
    """The last epoch's training metrics, or the best epoch's when EarlyStopping restored its weights."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights \
                and callback.best_weights is not None:
            row = callback.best_epoch - initial_epoch
            if 0 <= row < len(history.get("loss", [])):
                return {k: v[row] for k, v in history.items() if not k.startswith("val_") and len(v) > row}
    return {k: v[-1] for k, v in history.items() if not k.startswith("val_") and v}


def evaluate_held_out(spec, datasets, validation, result, final_train, evaluate) -> dict:
    """The final metrics by split: train's, then each held-out split's.

    The split validated on after the last epoch is not evaluated again: its `val_` values
    are already those of the final weights (unless callbacks may have changed the weights
    after the last epoch, e.g. EarlyStopping restoring the best ones). `spec` is the
    `TrainConfig` (the Spec is taken too).
    """
    evaluation = {"train": final_train}
    last_validated = not section(spec, "train").callbacks and (result.history.get("val_loss") or [None])[-1] is not None
    for split, dataset in (("validation", datasets.validation), ("test", datasets.test)):
        if dataset is None:
            continue
        if last_validated and dataset is validation:
            evaluation[split] = {k[len("val_"):]: v[-1] for k, v in result.history.items() if k.startswith("val_")}
        else:
            evaluation[split] = evaluate(dataset, split)
    return evaluation
