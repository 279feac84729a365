"""The fused engine against the programs a user would write by hand, per epoch.

Three comparisons, each in alternating repetitions within one process (hand-written
first in even repetitions, pipe first in odd ones, so machine load hits both alike),
one seed per repetition; medians and per-seed test accuracies are printed.

- mlp: the seed's MNIST model (Flatten-Dense(128, relu)-Dense(10), Adam(1e-3), batch 128,
  reshuffled each epoch, sparse cross-entropy from logits) on full Fashion-MNIST: the
  hand-written tf.data map/cache/shuffle/batch/prefetch + `fit` program against
  `specs/fashion_mnist.yaml` (engine auto) without its per-epoch validation pass.
- convnet: Keras's classic MNIST convnet (Conv32-Pool-Conv64-Pool-Flatten-Dropout-Dense)
  the same way, against `specs/fashion_mnist_convnet.yaml`.
- linear: the seed's eager GradientTape loop (w*x + b, 201 points, lr 0.1) for 2,000
  epochs, recording w and b and the report line each epoch as the seed does, against
  `specs/linear_regression.yaml` with engine auto; epochs per second.

What is timed, per epoch (time / epochs), two ways:
- training: on the hand-written side `fit` (its first epoch maps and caches the data and
  traces the step); on pipe's side the training function `pipe run` calls up to the end of
  its last epoch (the split into memory, tracing, XLA compilation, every epoch with its
  checkpoint);
- whole: the same plus the test split's evaluation on both sides.
Neither includes the TensorFlow import, file reading or saving, which both sides pay alike.
(The loop alone, for linear.)

    python benchmarks/fused.py [--only mlp,convnet,linear] [--seeds 4] [--epochs 3]
                               [--convnet-seeds 2] [--convnet-epochs 2] [--linear-repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts, not an installed package

import runner.train.fused  # noqa: E402
import runner.run.pipeline  # noqa: E402
from runner.spec import load_spec  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
SPECS = REPO / "specs"


def read_idx(name: str) -> np.ndarray:
    raw = gzip.decompress((FASHION / name).read_bytes())
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion():
    return ((read_idx("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz")),
            (read_idx("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz")))


# ------------------------------------------------------------------- hand-written programs


def seed_mlp():
    return keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                             keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])


def classic_convnet():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])


def hand_written(kind, data, seed, epochs):
    """The lecture's program: tf.data pipeline, compile, fit, evaluate; (training s/epoch,
    whole s/epoch, accuracy)."""
    (x, y), (tx, ty) = data
    keras.utils.set_random_seed(seed)
    shape = (28, 28, 1) if kind == "convnet" else (28, 28)

    def normalize_img(image, label):
        return tf.reshape(tf.cast(image, tf.float32) / 255., shape), label

    train = tf.data.Dataset.from_tensor_slices((x, y)).map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE)
    train = train.cache().shuffle(len(x)).batch(128).prefetch(tf.data.AUTOTUNE)
    test = tf.data.Dataset.from_tensor_slices((tx, ty)).map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE)
    test = test.batch(128).cache().prefetch(tf.data.AUTOTUNE)
    model = classic_convnet() if kind == "convnet" else seed_mlp()
    model.compile(optimizer=keras.optimizers.Adam(0.001),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=kind != "convnet"),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    trained = time.perf_counter()
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["sparse_categorical_accuracy"]
    return (trained - start) / epochs, (time.perf_counter() - start) / epochs, float(accuracy)


def seed_linear(epochs):
    """The seed's first program, eager, as the lecture writes it; epochs per second."""
    tf.random.set_seed(42)
    x = tf.linspace(-2.0, 2.0, 201)
    y = 3.0 * x + 2.0 + tf.random.normal(x.shape)

    class Model(tf.Module):
        def __init__(self):
            self.w = tf.Variable(5.0)
            self.b = tf.Variable(0.0)

        def __call__(self, x):
            return self.w * x + self.b

    model = Model()
    ws, bs, printed = [], [], io.StringIO()
    start = time.perf_counter()
    for epoch in range(epochs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(y - model(x)))
        dw, db = tape.gradient(loss, [model.w, model.b])
        model.w.assign_sub(0.1 * dw)
        model.b.assign_sub(0.1 * db)
        ws.append(model.w.numpy())
        bs.append(model.b.numpy())
        print(f"Epoch {epoch}: W = {ws[-1]:.2f}, b = {bs[-1]:.2f}, loss={loss.numpy():.5f}", file=printed)
    return epochs / (time.perf_counter() - start)


# ------------------------------------------------------------------------------- pipe


class Timer:
    """Times every call of the training `pipe run` calls, whatever the engine (`seconds`), and
    the fused engine's training up to the end of its last epoch (`training`)."""

    TARGETS = ((runner.run.pipeline, "train_with"),)

    def __init__(self):
        self.seconds = self.training = 0.0
        self.which = None
        self._started = 0.0
        for owner, name in self.TARGETS:
            setattr(owner, name, self._wrap(getattr(owner, name), name))
        fit = runner.train.fused.FusedLoop.fit

        def timed_fit(*args, **kwargs):
            try:
                return fit(*args, **kwargs)
            finally:
                self.training = time.perf_counter() - self._started

        runner.train.fused.FusedLoop.fit = timed_fit

    def _wrap(self, function, name):
        def timed(*args, **kwargs):
            self._started = start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds = time.perf_counter() - start
                self.which = name

        return timed


def pipe_run(timer, spec_file, sets, folder):
    """`pipe run SPEC --set ...` in-process (report lines swallowed); (seconds, metrics, engine)."""
    spec = load_spec(spec_file, overrides=sets) if sets else load_spec(spec_file)
    timer.training = float("nan")
    with contextlib.redirect_stdout(io.StringIO()):
        result = runner.run.pipeline.run_spec(spec, quiet=False)
    engine = yaml.safe_load((folder / result.run_dir / "manifest.json").read_text())["engine"]
    return timer.seconds, result.metrics, engine


def spec_without_validation(source: Path, folder: Path) -> Path:
    """The spec with its per-epoch validation pass removed (the hand-written program has none)."""
    doc = load_spec(source).doc  # merged with the bases it extends
    doc["train"].pop("validate_on", None)
    doc["outputs"] = {"dir": str(folder / "runs"), "plots": {"confusion_matrix": False}}
    path = folder / source.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# ------------------------------------------------------------------------------ main


def compare_classifier(kind, spec_file, timer, data, seeds, epochs, folder):
    spec = spec_without_validation(spec_file, folder)
    rows = []
    for i, seed in enumerate(seeds):
        sets = [f"seed={seed}", f"train.epochs={epochs}"]
        runs = {}
        for side in (("hand", "pipe") if i % 2 == 0 else ("pipe", "hand")):
            gc.collect()  # neither side pays for collecting the other's garbage
            if side == "hand":
                runs["hand"] = hand_written(kind, data, seed, epochs)
            else:
                seconds, metrics, engine = pipe_run(timer, spec, sets, folder)
                runs["pipe"] = (timer.training / epochs, seconds / epochs,
                                metrics["test"]["SparseCategoricalAccuracy"], engine)
        (hand_train, hand_whole, hand_acc), (pipe_train, pipe_whole, pipe_acc, engine) = runs["hand"], runs["pipe"]
        rows.append((hand_train, pipe_train, hand_whole, pipe_whole, hand_acc, pipe_acc))
        print(f"{kind} seed {seed}: training s/epoch hand-written {hand_train:.3f}, pipe ({engine}) {pipe_train:.3f}, "
              f"ratio {pipe_train / hand_train:.3f} | whole s/epoch {hand_whole:.3f}, {pipe_whole:.3f}, ratio "
              f"{pipe_whole / hand_whole:.3f} | test accuracy {hand_acc:.4f}, {pipe_acc:.4f}", flush=True)
    for name, hand, pipe in (("training", 0, 1), ("whole", 2, 3)):
        ratios = [r[pipe] / r[hand] for r in rows]
        print(f"{kind} {name}: median s/epoch hand-written {statistics.median(r[hand] for r in rows):.3f}, "
              f"pipe {statistics.median(r[pipe] for r in rows):.3f}; median ratio {statistics.median(ratios):.3f} "
              f"(per seed {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    print(f"{kind}: test accuracy hand-written {min(r[4] for r in rows):.4f}..{max(r[4] for r in rows):.4f}, "
          f"pipe {min(r[5] for r in rows):.4f}..{max(r[5] for r in rows):.4f}", flush=True)


def compare_linear(timer, repeats, epochs, folder):
    spec = folder / "linear_regression.yaml"
    doc = yaml.safe_load((SPECS / "linear_regression.yaml").read_text())
    doc["outputs"]["dir"] = str(folder / "runs")
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    sets = [f"train.epochs={epochs}", "train.engine=auto"]
    rows = []
    for i in range(repeats):
        rates = {}
        for side in (("seed", "pipe") if i % 2 == 0 else ("pipe", "seed")):
            gc.collect()
            if side == "seed":
                rates["seed"] = seed_linear(epochs)
            else:
                seconds, _, engine = pipe_run(timer, spec, sets, folder)
                rates["pipe"] = epochs / seconds
        rows.append(rates["pipe"] / rates["seed"])
        print(f"linear repeat {i}: seed eager loop {rates['seed']:.0f} epochs/s | pipe ({engine}) "
              f"{rates['pipe']:.0f} epochs/s | speed-up {rows[-1]:.1f}x", flush=True)
    print(f"linear: median speed-up {statistics.median(rows):.1f}x over {epochs} epochs", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="mlp,convnet,linear")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--convnet-seeds", type=int, default=2)
    parser.add_argument("--convnet-epochs", type=int, default=2)
    parser.add_argument("--linear-repeats", type=int, default=3)
    parser.add_argument("--linear-epochs", type=int, default=2000)
    args = parser.parse_args()
    only = set(args.only.split(","))
    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="pipe-fused-bench-") as tmp:
        folder = Path(tmp)
        data = fashion() if only & {"mlp", "convnet"} else None
        if "mlp" in only:
            compare_classifier("mlp", SPECS / "fashion_mnist.yaml", timer, data,
                               list(range(1, args.seeds + 1)), args.epochs, folder)
        if "convnet" in only:
            compare_classifier("convnet", SPECS / "fashion_mnist_convnet.yaml", timer, data,
                               list(range(1, args.convnet_seeds + 1)), args.convnet_epochs, folder)
        if "linear" in only:
            compare_linear(timer, args.linear_repeats, args.linear_epochs, folder)


if __name__ == "__main__":
    main()
