"""One whole run, as its own process, with the seconds of each epoch written to a JSON file.

    python benchmarks/timed_run.py pipe EPOCHS_JSON -- run specs/fashion_mnist.yaml --quiet
    python benchmarks/timed_run.py hand EPOCHS_JSON -- fashion_mnist --epochs 3 --out DIR

`pipe` runs the `pipe` command line in this process (exactly `pipe run ...`, its exit
included), with one Keras callback added that notes when each epoch begins and ends (and
writes the file at each epoch's end); `hand` runs benchmarks/hand_written.py with the same
callback. Nothing else is changed, so the process costs what `pipe run` or the
hand-written script costs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts, not an installed package


def _timer(out: Path):
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Seconds of each epoch, training and validation, from its begin to its end hook."""

        def __init__(self):
            super().__init__()
            self.seconds = []
            self._start = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            out.write_text(json.dumps(self.seconds))

    return EpochTimer()


def main() -> int:
    kind, out, separator, *args = sys.argv[1:]
    assert separator == "--", __doc__
    out = Path(out)
    out.write_text("[]")
    if kind == "pipe":
        from runner import cli

        def with_timer(original):
            def wrapper(*a, **k):
                return [*original(*a, **k), _timer(out)]
            return wrapper

        import runner.run  # imports TensorFlow, as `pipe run` does on its way to training

        runner.run.get_callbacks = with_timer(runner.run.get_callbacks)
        sys.argv = ["pipe", *args]
        cli.run_pipe()  # exits
    else:
        import argparse

        from benchmarks import hand_written

        parser = argparse.ArgumentParser()
        parser.add_argument("program")
        parser.add_argument("--epochs", type=int, default=3)
        parser.add_argument("--out", type=Path)
        options = parser.parse_args(args)
        hand_written.fashion_mnist(options.epochs, options.out, callbacks=[_timer(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
