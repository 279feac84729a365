"""The run's epoch hooks as Keras callbacks, so `fit` calls them as the custom loop does."""

from __future__ import annotations

import keras


class EpochBegin(keras.callbacks.Callback):
    """Calls `hook(epoch)` as each epoch begins (the data's epoch, which seeds reshuffling)."""

    def __init__(self, hook):
        super().__init__()
        self.hook = hook

    def on_epoch_begin(self, epoch, logs=None):
        self.hook(epoch)


class EpochEnd(keras.callbacks.Callback):
    """Calls `hook(epoch, logs, scalars=None)` at each epoch end; put it after every other callback
    so that it sees the logs as they end up (callbacks may add to them, e.g. the learning rate)."""

    def __init__(self, hook):
        super().__init__()
        self.hook = hook

    def on_epoch_end(self, epoch, logs=None):
        self.hook(epoch, dict(logs or {}), None)


class EpochLogs(keras.callbacks.Callback):
    """The logs of each epoch as the callbacks before it left them, as Keras's History sees them
    (the custom loop's and the fused engine's, whose own dict a CallbackList copies)."""

    def __init__(self):
        super().__init__()
        self.logs = {}

    def on_epoch_end(self, epoch, logs=None):
        self.logs[epoch] = dict(logs or {})
