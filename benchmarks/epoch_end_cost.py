"""What the epoch-end writes cost: tables, checkpoint and heartbeat, against the epoch itself.

Runs a small spec (fit and custom loop, 40 short epochs) and times, inside the run, the
epoch-end hook and its three parts. Prints milliseconds per epoch and the hook's share of
the training time. Usage: python benchmarks/epoch_end_cost.py
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.run import epoch_end as progress_module  # noqa: E402
from runner.outputs.epochs import EpochLog  # noqa: E402
from runner.outputs.manifest import Manifest  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.spec import load_spec  # noqa: E402

SPEC = """\
version: 1
name: bench
seed: 7
data:
  train:
    source: {synthetic: {x: {uniform: {low: -1.0, high: 1.0, num: 256}}, y: {linear: {w: -2.0, b: 0.5}}}}
    stages: [{shuffle: {buffer_size: all}}, {batch: {batch_size: 32}}]
model:
  sequential: {input_shape: [1], layers: [{Dense: {units: 8, activation: tanh}}, {Dense: {units: 1}}]}
train: {loop: LOOP, epochs: 40, loss: mse, optimizer: adam}
outputs: {plots: {enabled: false}, save_model: false}
"""

timings: dict = {}


def timed(name, function):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
    return wrapper


def main():
    folder = Path(tempfile.mkdtemp())
    os.chdir(folder)
    EpochLog.record = timed("tables", EpochLog.record)
    Manifest.heartbeat = timed("heartbeat", Manifest.heartbeat)
    progress_module.Progress._save = timed("checkpoint", progress_module.Progress._save)
    original = progress_module.Progress.epoch_end
    progress_module.Progress.epoch_end = lambda self, checkpoint=None: timed("hook", original(self, checkpoint))
    for loop in ("fit", "custom"):
        path = folder / f"{loop}.yaml"
        path.write_text(SPEC.replace("LOOP", loop))
        timings.clear()
        with contextlib.redirect_stdout(io.StringIO()):
            result = run_spec(load_spec(path), quiet=True)
        import json

        wall = json.loads((result.run_dir / "manifest.json").read_text())["wall_time_s"]
        epochs = 40
        parts = ", ".join(f"{k} {1000 * v / epochs:.1f}" for k, v in timings.items() if k != "hook")
        print(f"{loop}: epoch-end hook {1000 * timings['hook'] / epochs:.1f} ms/epoch ({parts}); "
              f"run wall time {wall:.2f} s, hook share {timings['hook'] / wall:.0%}")


if __name__ == "__main__":
    main()
