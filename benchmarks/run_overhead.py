"""Wall time of `pipe run` on a spec against the same training written by hand in Keras.

One process runs, in alternating repetitions (so machine load hits all alike): the spec
with `loop: fit`, the hand-written script, the spec with `loop: custom` (the GradientTape
loop), and the hand-written script again. The two hand-written runs of a repetition are
each other's control: their ratio is the machine's noise floor.

The hand-written script is the seed lecture's: the IDX arrays read with numpy and gzip,
map(normalize)/cache/shuffle/batch(128)/prefetch, Flatten-Dense(128, relu)-Dense(10),
Adam(1e-3), fit with the test split as validation, evaluate, save model.keras and the
history. The spec runs with a timer around each of its phases (data, fingerprints, fit,
checkpoints, evaluation, saving, plots), so the table says where any extra time goes.
A callback on both sides times every epoch; the steady epochs (2..N) exclude tracing.

    python benchmarks/run_overhead.py [--spec specs/fashion_mnist.yaml] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import keras
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts, not an installed package

import runner.outputs.manifest  # noqa: E402
import runner.outputs.plots  # noqa: E402
import runner.outputs.predictions  # noqa: E402
import runner.outputs.results  # noqa: E402
import runner.outputs.saving  # noqa: E402
import runner.run.build  # noqa: E402
import runner.run.loops  # noqa: E402
import runner.run.pipeline  # noqa: E402
import runner.train.checkpoint  # noqa: E402
import runner.train.custom  # noqa: E402
from benchmarks.data_pipeline import hand_written  # noqa: E402
from benchmarks.epoch_timer import EpochTimer  # noqa: E402
from benchmarks.hand_written import read_idx, seed_mnist_model  # noqa: E402
from runner.spec import load_spec  # noqa: E402

# What the spec's run is timed by: (label, owner, attribute). Nested phases (checkpoints
# inside fit, the confusion matrix inside results) are shown indented and not summed twice.
_PHASES = (
    ("devices", runner.run.build, "setup_devices"),
    ("data", runner.run.build, "build_datasets"),
    ("fingerprints", runner.outputs.manifest, "fingerprint"),
    ("train+evaluate", runner.run.pipeline, "train_with"),
    ("  fit", runner.run.loops, "fit"),
    ("  fit", runner.train.custom.CustomLoop, "fit"),
    ("    checkpoints", runner.train.checkpoint.EpochCheckpoint, "save"),
    ("results", runner.run.pipeline, "write_results"),
    ("  save model", runner.outputs.results, "save_model"),
    ("  confusion matrix", runner.outputs.results, "confusion_matrices"),
    ("  plots", runner.outputs.plots, "plot_history"),
    ("  plots", runner.outputs.plots, "plot_confusion_matrix"),
)


@contextlib.contextmanager
def timed_phases(times: dict, timer: EpochTimer):
    """Wrap the run's phases with timers (into `times`) and give its fit `timer` as a callback."""

    def timing(label, original):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times[label] += time.perf_counter() - start
        return wrapper

    def with_timer(original):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            return [*original(*args, **kwargs), timer]
        return wrapper

    patched = [(owner, name, owner.__dict__[name]) for _, owner, name in _PHASES]
    patched.append((runner.run.build, "get_callbacks", runner.run.build.get_callbacks))
    try:
        for label, owner, name in _PHASES:
            setattr(owner, name, timing(label, owner.__dict__[name]))
        runner.run.build.get_callbacks = with_timer(runner.run.build.get_callbacks)
        yield
    finally:
        for owner, name, original in patched:
            setattr(owner, name, original)


def run_pipe(spec_path: str, overrides: list[str]) -> dict:
    """`pipe run` on the spec; total, per-phase and per-epoch seconds."""
    times, timer = defaultdict(float), EpochTimer()
    start = time.perf_counter()
    spec = load_spec(spec_path, overrides=overrides)
    with timed_phases(times, timer):
        runner.run.pipeline.run_spec(spec, quiet=True)
    times["total"] = time.perf_counter() - start
    return {"times": dict(times), "epochs": timer.seconds}


def run_hand(data_dir: Path, epochs: int, seed: int, out_dir: Path) -> dict:
    """The seed lecture in plain Keras on the same files; total, per-phase and per-epoch seconds."""
    times, timer = {}, EpochTimer()
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    train_x = read_idx(data_dir / "train-images-idx3-ubyte.gz")
    train_y = read_idx(data_dir / "train-labels-idx1-ubyte.gz")
    test_x = read_idx(data_dir / "t10k-images-idx3-ubyte.gz")
    test_y = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")
    ds_train = hand_written(train_x, train_y)
    ds_test = tf.data.Dataset.from_tensor_slices((test_x, test_y))
    ds_test = ds_test.map(lambda image, label: (tf.cast(image, tf.float32) / 255., label),
                          num_parallel_calls=tf.data.AUTOTUNE)
    ds_test = ds_test.batch(128).cache().prefetch(tf.data.AUTOTUNE)
    times["data"] = time.perf_counter() - start

    model = seed_mnist_model()
    mark = time.perf_counter()
    history = model.fit(ds_train, epochs=epochs, validation_data=ds_test, callbacks=[timer], verbose=0)
    times["  fit"] = time.perf_counter() - mark
    mark = time.perf_counter()
    model.evaluate(ds_test, verbose=0, return_dict=True)
    times["evaluate"] = time.perf_counter() - mark
    mark = time.perf_counter()
    out_dir.mkdir(parents=True)
    model.save(out_dir / "model.keras")
    (out_dir / "history.json").write_text(json.dumps(history.history, default=float))
    times["  save model"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    return {"times": times, "epochs": timer.seconds}


def steady(result: dict) -> float:
    """Median epoch after the first (which traces the step functions)."""
    later = result["epochs"][1:] or result["epochs"]
    return statistics.median(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(REPO / "specs" / "fashion_mnist.yaml"))
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                        help="folder of the four Fashion-MNIST IDX files the spec reads")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    spec_path = str(Path(args.spec).resolve())
    seed = load_spec(spec_path).doc.get("seed", 0)
    workdir = Path(tempfile.mkdtemp(prefix="pipe-overhead-"))
    here = Path.cwd()
    os.chdir(workdir)  # run directories and saved models land in the temporary folder
    # The tf.data loops (fit, custom), which the hand-written program also runs: not the fused engine.
    base = [f"train.epochs={args.epochs}", f"outputs.dir={workdir / 'runs'}", "train.engine=keras",
            "device.jit_compile=false"]
    runs = {
        "pipe fit": lambda: run_pipe(spec_path, [*base, "train.loop=fit"]),
        "hand": lambda: run_hand(Path(args.data), args.epochs, seed, workdir / f"hand-{time.time_ns()}"),
        "pipe custom": lambda: run_pipe(spec_path, [*base, "train.loop=custom"]),
        "hand control": lambda: run_hand(Path(args.data), args.epochs, seed, workdir / f"hand-{time.time_ns()}"),
    }
    print(f"spec {args.spec}: {args.repeats} repeats x {list(runs)}, {args.epochs} epochs each", flush=True)
    results = defaultdict(list)
    try:
        # One-time costs of the process (runtime start, first tracing, matplotlib) are
        # paid by an untimed run of each kind; the spec's first, as it sets up devices.
        run_pipe(spec_path, [*base, "train.epochs=1"])
        run_hand(Path(args.data), 1, seed, workdir / "hand-warmup")
        for repeat in range(args.repeats):
            order = list(runs)
            if repeat % 2:  # every other repetition, each pair runs the other way round
                order = [order[1], order[0], order[3], order[2]]
            for name in order:
                results[name].append(runs[name]())
            line = ", ".join(f"{n} {results[n][-1]['times']['total']:.1f} s" for n in runs)
            print(f"  repeat {repeat + 1}: {line}", flush=True)
    finally:
        os.chdir(here)
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, list(runs))


def report(results: dict, names: list[str]) -> None:
    """Median seconds of every phase by run kind, then the paired ratios."""
    labels = list(dict.fromkeys(["total", *(label for label, _, _ in _PHASES), "evaluate"]))
    width = max(len(n) for n in names) + 2
    print(f"\nmedian seconds over repeats\n{'phase':<20}" + "".join(f"{n:>{width}}" for n in names))
    for label in labels:
        cells = []
        for name in names:
            values = [r["times"][label] for r in results[name] if label in r["times"]]
            cells.append(f"{statistics.median(values):>{width}.2f}" if values else f"{'-':>{width}}")
        if any(c.strip() != "-" for c in cells):
            print(f"{label:<20}" + "".join(cells))
    cells = "".join(f"{statistics.median(steady(r) for r in results[n]):>{width}.2f}" for n in names)
    print(f"{'steady epoch':<20}{cells}")

    def ratio(name, measure, against="hand"):
        pairs = [measure(a) / measure(b) for a, b in zip(results[name], results[against])]
        return statistics.median(pairs)

    total = lambda r: r["times"]["total"]  # noqa: E731
    fit = lambda r: r["times"]["  fit"]  # noqa: E731
    print("\nmedian ratio over repeats, each against that repeat's hand-written run")
    print(f"{'':<14}{'total':>8}{'fit':>8}{'epoch':>8}")
    for name in ("pipe fit", "pipe custom", "hand control"):
        print(f"{name:<14}{ratio(name, total):>8.3f}{ratio(name, fit):>8.3f}{ratio(name, steady):>8.3f}")


if __name__ == "__main__":
    main()
