"""A Keras callback that times every epoch, training and validation, from begin to end hook."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras


class EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch in `seconds`; also written to `out` (JSON) at each epoch's end,
    when given, so a process that ends without teardown still leaves them."""

    def __init__(self, out: Path | None = None):
        super().__init__()
        self.seconds = []
        self.out = out
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        if self.out is not None:
            Path(self.out).write_text(json.dumps(self.seconds))
