"""`pipe sweep` against Keras Tuner's RandomSearch on full Fashion-MNIST; pruned against unpruned.

    python benchmarks/sweep_vs_keras_tuner.py                      # 20 trials x 3 epochs, median of 3
    python benchmarks/sweep_vs_keras_tuner.py --trials 4 --epochs 1 --repeats 1   # a quick look

Needs Optuna and Keras Tuner (`pip install 'pipe[bench]'`) and the Fashion-MNIST IDX files
of Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist).

The same search space for both (units of the hidden layer 32..512 by 32, learning rate
1e-4..1e-2 on a log scale, dropout 0..0.5), the same budget (`--trials` trials of `--epochs`
epochs), random sampling, the test split as the validation data, one process each:

- pipe:         `pipe sweep` with the median pruner off (`sweep.pruner: none`), one worker
- pipe-pruned:  the same with the median pruner
- keras-tuner:  a program with `keras_tuner.RandomSearch` over the same model, `search()` with
                `fit` on the arrays (what Keras Tuner's documentation shows)

Whole processes are measured (os.wait4: wall time and peak memory), alternating, the order
reversed every repetition; the median of the repetitions is reported with each program's
best validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/usr/share/datasets/fashion-mnist")
JIT = False  # --jit: XLA compiles the fused steps, as specs/fashion_mnist.yaml (each trial compiles anew)

SPEC = """\
version: 1
name: sweep_bench
seed: 42
data:
  train:
    source: {{idx: {{images: {data}/train-images-idx3-ubyte.gz, labels: {data}/train-labels-idx1-ubyte.gz}}}}
    stages:
      - map: {{ops: [{{cast: {{dtype: float32}}}}, {{scale: {{divisor: 255.0}}}}]}}
      - cache: {{}}
      - shuffle: {{buffer_size: all}}
      - batch: {{batch_size: 128}}
      - prefetch: {{}}
  test:
    source: {{idx: {{images: {data}/t10k-images-idx3-ubyte.gz, labels: {data}/t10k-labels-idx1-ubyte.gz}}}}
    stages:
      - map: {{ops: [{{cast: {{dtype: float32}}}}, {{scale: {{divisor: 255.0}}}}]}}
      - batch: {{batch_size: 128}}
      - cache: {{}}
      - prefetch: {{}}
model:
  sequential:
    input_shape: [28, 28]
    layers:
      - Flatten: {{}}
      - Dense: {{units: 128, activation: relu}}
      - Dropout: {{rate: 0.2}}
      - Dense: {{units: 10}}
train:
  loop: fit
  engine: auto
  epochs: {epochs}
  loss: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}
  optimizer: {{Adam: {{learning_rate: 0.001}}}}
  metrics: [SparseCategoricalAccuracy]
  validate_on: test
device:
  jit_compile: {jit}
outputs:
  dir: runs
  plots: {{enabled: false}}
sweep:
  objective: test.SparseCategoricalAccuracy
  trials: {trials}
  sampler: random
  pruner: {pruner}
  seed: 0
  parameters:
    model.sequential.layers[1].Dense.units: {{int: [32, 512], step: 32}}
    train.optimizer.Adam.learning_rate: {{float: [0.0001, 0.01], log: true}}
    model.sequential.layers[2].Dropout.rate: {{float: [0.0, 0.5]}}
"""

KERAS_TUNER = """\
import gzip, json, sys, numpy as np, keras, keras_tuner
trials, epochs, data, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def idx(name, offset):
    with gzip.open(f"{data}/{name}", "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)
x = idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28).astype("float32") / 255.0
y = idx("train-labels-idx1-ubyte.gz", 8).astype("int64")
xt = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28).astype("float32") / 255.0
yt = idx("t10k-labels-idx1-ubyte.gz", 8).astype("int64")
def build(hp):
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
        keras.layers.Dense(hp.Int("units", 32, 512, step=32), activation="relu"),
        keras.layers.Dropout(hp.Float("dropout", 0.0, 0.5)), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 1e-2, sampling="log")),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    return model
keras.utils.set_random_seed(42)
tuner = keras_tuner.RandomSearch(build, objective=keras_tuner.Objective("val_sparse_categorical_accuracy", "max"),
                                 max_trials=trials, seed=0, directory=work, project_name="kt", overwrite=True)
tuner.search(x, y, epochs=epochs, batch_size=128, validation_data=(xt, yt), verbose=0)
best = tuner.oracle.get_best_trials(1)[0]
print(json.dumps({"best": best.score}))
"""


def measured(command, cwd) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{err.read().decode()[-3000:]}")
        return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "stdout": out.read().decode()}


def pipe_program(work: Path, trials: int, epochs: int, pruner: str):
    spec = work / f"sweep_{pruner}.yaml"
    spec.write_text(SPEC.format(data=DATA, trials=trials, epochs=epochs, pruner=pruner, jit=str(JIT).lower()))

    def run():
        result = measured([sys.executable, "-m", "runner.cli", "sweep", str(spec)], work)
        line = next(x for x in result["stdout"].splitlines() if x.startswith("sweep directory: "))
        best = json.loads((work / line.split(": ", 1)[1] / "sweep.json").read_text())["best"]
        counts = json.loads((work / line.split(": ", 1)[1] / "sweep.json").read_text())["counts"]
        return {**result, "best": best["value"], "counts": counts}

    return run


def keras_tuner_program(work: Path, trials: int, epochs: int):
    script = work / "keras_tuner_search.py"
    script.write_text(KERAS_TUNER)

    def run():
        result = measured([sys.executable, str(script), str(trials), str(epochs), str(DATA), str(work / "kt")], work)
        return {**result, "best": json.loads(result["stdout"].strip().splitlines()[-1])["best"]}

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["pipe", "pipe-pruned", "keras-tuner"])
    parser.add_argument("--jit", action="store_true", help="pipe's trials with XLA (device.jit_compile)")
    args = parser.parse_args(argv)
    global JIT
    JIT = args.jit
    work = Path(tempfile.mkdtemp(prefix="pipe-sweep-bench-"))
    programs = {"pipe": pipe_program(work, args.trials, args.epochs, "none"),
                "pipe-pruned": pipe_program(work, args.trials, args.epochs, "median"),
                "keras-tuner": keras_tuner_program(work, args.trials, args.epochs)}
    programs = {k: v for k, v in programs.items() if k in args.only}
    results = {name: [] for name in programs}
    for repeat in range(args.repeats):
        order = list(programs) if repeat % 2 == 0 else list(reversed(programs))
        for name in order:
            result = programs[name]()
            results[name].append(result)
            print(f"{name:12} repeat {repeat + 1}: {result['wall']:.1f}s  best val accuracy {result['best']:.4f}"
                  f"  peak {result['rss_mb']:.0f} MB" + (f"  {result['counts']}" if "counts" in result else ""),
                  flush=True)
    summary = {name: {"wall_median_s": statistics.median(r["wall"] for r in runs),
                      "best_accuracy_median": statistics.median(r["best"] for r in runs)}
               for name, runs in results.items()}
    if "pipe" in summary and "keras-tuner" in summary:
        summary["pipe_vs_keras_tuner_wall"] = summary["pipe"]["wall_median_s"] / summary["keras-tuner"]["wall_median_s"]
    if "pipe" in summary and "pipe-pruned" in summary:
        summary["pruned_vs_unpruned_wall"] = summary["pipe-pruned"]["wall_median_s"] / summary["pipe"]["wall_median_s"]
    print(json.dumps({"trials": args.trials, "epochs": args.epochs, "repeats": args.repeats, **summary}, indent=2))


if __name__ == "__main__":
    main()
