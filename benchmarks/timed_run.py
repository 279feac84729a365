"""One whole run, as its own process, with the seconds of each epoch written to a JSON file.

    python benchmarks/timed_run.py pipe EPOCHS_JSON -- run specs/fashion_mnist.yaml --quiet
    python benchmarks/timed_run.py hand EPOCHS_JSON -- fashion_mnist --epochs 3 --out DIR

`pipe` runs the `pipe` command line in this process (exactly `pipe run ...`, its exit
included), with one Keras callback added to the tf.data loops that notes when each epoch
begins and ends (and writes the file at each epoch's end; the fused engine's epochs are
not timed); `hand` runs benchmarks/hand_written.py with the same
callback. Nothing else is changed, so the process costs what `pipe run` or the
hand-written script costs.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts, not an installed package


def main() -> int:
    kind, out, separator, *args = sys.argv[1:]
    assert separator == "--", __doc__
    out = Path(out)
    out.write_text("[]")
    from benchmarks.epoch_timer import EpochTimer

    if kind == "pipe":
        import dataclasses

        from runner import cli
        import runner.run.loops  # imports TensorFlow, as `pipe run` does on its way to training

        def with_timer(train):
            def timed(engine, context):
                return train(engine, dataclasses.replace(context, callbacks=[*context.callbacks, EpochTimer(out)]))
            return timed

        # The tf.data loops' callbacks only: a callback would make the fused engine run one
        # epoch per graph call, so its epochs stay untimed (the whole run is what counts).
        for engine in (runner.run.loops.FitEngine, runner.run.loops.CustomEngine):
            engine.train = with_timer(engine.train)
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
        hand_written.fashion_mnist(options.epochs, options.out, callbacks=[EpochTimer(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
