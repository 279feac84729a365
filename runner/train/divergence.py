"""A NaN or infinite training loss stops training, in both loops, saying at which epoch and step.

The check costs no synchronisation of its own: in `fit` it reads the batch logs on Keras's
callback thread (like `keras.callbacks.TerminateOnNaN`, but dispatched asynchronously);
in the custom loop the graph notes the first non-finite step, read with the epoch's state
(see execution.py). Training stops before the epoch's end is recorded, so the last
checkpoint is the last good one.
"""

from __future__ import annotations

import math

import keras

from runner.errors import EXIT_DIVERGED, PipeError, printable


class TrainingDiverged(PipeError):
    """The training loss became NaN or infinite.

    Attributes:
        epoch, step: 0-based; `step` is None when only the epoch's mean showed it.
        value: the non-finite loss (nan, inf or -inf).
    """

    exit_code = EXIT_DIVERGED

    def __init__(self, epoch: int, step: int | None, value: float):
        self.epoch, self.step, self.value = epoch, step, value
        self.run_dir = None  # set by run_spec, with the last (good) checkpoint
        self.last_checkpoint = None
        self.epochs_done = 0  # finite epochs recorded before this one
        where = f"epoch {epoch + 1}" + ("" if step is None else f", step {step + 1}")
        super().__init__(f"the training loss became {value} at {where}")

    def report(self, command: str) -> str:
        """The lines `pipe run` prints: what happened, where the run is, what is kept."""
        lines = [f"pipe {command}: training diverged: {printable(self)} (try a lower learning rate, or look for NaN in the data "
                 "or, under XLA, labels outside the model's classes)"]
        if self.run_dir is not None:
            lines.append(f"run directory: {printable(self.run_dir)}")
            if self.last_checkpoint:
                lines.append(f"last good checkpoint: {printable(self.last_checkpoint)}")
            elif self.epochs_done:
                lines.append(f"no checkpoint: the {self.epochs_done} finite epochs were not saved yet (checkpoints "
                             "are saved at most every 30 s by default; outputs.checkpoints: {every_epoch: true} "
                             "saves each)")
            else:
                lines.append("no good checkpoint: no epoch ended with a finite loss")
        return "\n".join(lines)


def check_finite(loss, epoch: int, step: int | None = None, *, diverged: bool = False) -> None:
    """Raise `TrainingDiverged` when the training loss is NaN or infinite: the one check
    every engine makes (a batch's loss in `fit`, the step the graph noted in the custom
    loop, each epoch's mean at its end).

    Args:
        loss: the loss (None: not known here, nothing to check).
        epoch, step: where it was seen (0-based; `step` None: only the epoch's mean showed it).
        diverged: the graph already found a non-finite step (`step`), whatever `loss` says.
    """
    if diverged or (loss is not None and not math.isfinite(float(loss))):
        raise TrainingDiverged(epoch, step, float(loss))


class StopOnNonFinite(keras.callbacks.Callback):
    """For `fit`: raises TrainingDiverged at the first batch whose loss is not finite."""

    async_safe = True  # runs on Keras's callback thread: the training loop never waits for it

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        check_finite((logs or {}).get("loss"), self.epoch, batch)
