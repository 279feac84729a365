"""Keras `Model.fit` on a compiled model, its history as a `TrainResult`."""

from __future__ import annotations

from runner.train.result import TrainResult


def fit(model, *, train, validation=None, epochs, callbacks=(), class_weight=None,
        steps_per_epoch=None, verbose="auto", initial_epoch=0, validation_freq=1) -> TrainResult:
    """Keras `Model.fit` on a compiled model; Keras's progress bar and callbacks."""
    history = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=list(callbacks),
        class_weight=class_weight,
        steps_per_epoch=steps_per_epoch,
        verbose=verbose,
        validation_freq=validation_freq,
        shuffle=False,  # a dataset is shuffled by its own `shuffle` stage
    )
    logs = {key: [float(v) for v in values] for key, values in history.history.items()}
    return TrainResult(history=logs, epochs_run=len(logs.get("loss", [])))
