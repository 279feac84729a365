"""The fused engine on a folder of PNG images with augmentation, against the tutorial's program.

TensorFlow's image-classification tutorial (tensorflow.org/tutorials/images/classification)
on Fashion-MNIST written as PNG folders (scripts/make_fashion_png_folders.py: 6,000 train,
1,000 test, 28x28 grayscale, one sub-folder per class). Its model: RandomFlip("horizontal"),
RandomRotation(0.1), RandomZoom(0.1) as the first layers, Rescaling(1/255), three
Conv2D-MaxPooling2D pairs (16, 32, 64 filters, same padding), Dropout(0.2), Flatten,
Dense(128, relu), Dense(10); Adam, sparse cross-entropy from logits, batch 32, validated on
the test folder after every epoch.

- hand-written: the tutorial's program (`image_dataset_from_directory`,
  `.cache().shuffle(1000).prefetch(AUTOTUNE)`, `model.fit` with `validation_data`);
- pipe: the same model and data as a spec (`SPEC` below: an `image_folder` source, `cache`,
  `shuffle: all`, `batch: 32`; `train.engine: auto`), run in-process; the engine it chose is
  printed (fused: the images held as uint8 in memory, the model's random layers drawing in
  the step, whole epochs per graph call).

Alternating repetitions in one process (hand-written first for even repetitions, pipe first
for odd ones), one seed per repetition. What is compared is the time per epoch after the
first (the first maps and caches the data and traces; later epochs are what a longer run
pays): from the end of the first epoch to the end of the last, over the epochs between,
validation included on both sides; in wall time, and in the process's CPU time (all its
threads), which a loaded machine disturbs less: the scheduler shares the cores per thread,
so under heavy load a program with more busy threads (tf.data's beside the step's) gets
more of them. Test accuracy is the last epoch's accuracy on the test
folder.

    python scripts/make_fashion_png_folders.py /tmp/fashion-png
    python benchmarks/fused_image_folder.py /tmp/fashion-png [--seeds 3] [--epochs 4] [--set train.engine=keras]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of scripts

import runner.run.pipeline  # noqa: E402
import runner.train.fused  # noqa: E402
from runner.spec import load_spec  # noqa: E402

SPEC = """\
version: 1
name: image_folder_augmented
seed: 1
data:
  train:
    source: {image_folder: {directory: FOLDER/train, color_mode: grayscale}}
    stages:
      - cache: {}
      - shuffle: {buffer_size: all}
      - batch: {batch_size: 32}
      - prefetch: {}
  test:
    source: {image_folder: {directory: FOLDER/test, color_mode: grayscale}}
    stages:
      - batch: {batch_size: 32}
      - cache: {}
      - prefetch: {}
model:
  sequential:
    input_shape: [28, 28, 1]
    layers:
      - RandomFlip: {mode: horizontal}
      - RandomRotation: {factor: 0.1}
      - RandomZoom: {height_factor: 0.1}
      - Rescaling: {scale: 0.00392156862745098}   # 1/255
      - Conv2D: {filters: 16, kernel_size: 3, padding: same, activation: relu}
      - MaxPooling2D: {}
      - Conv2D: {filters: 32, kernel_size: 3, padding: same, activation: relu}
      - MaxPooling2D: {}
      - Conv2D: {filters: 64, kernel_size: 3, padding: same, activation: relu}
      - MaxPooling2D: {}
      - Dropout: {rate: 0.2}
      - Flatten: {}
      - Dense: {units: 128, activation: relu}
      - Dense: {units: 10}
train:
  engine: auto
  epochs: 4
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  metrics: [accuracy]
  validate_on: test
outputs: {dir: RUNS, plots: {enabled: false}}
"""


class EpochEnds(keras.callbacks.Callback):
    """When each epoch of `fit` ended."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(_clocks())


def _clocks():
    """(wall, CPU) seconds now: the process's CPU time counts all its threads."""
    return time.perf_counter(), time.process_time()


def after_first(ends: list) -> tuple:
    """(wall, CPU) seconds per epoch from the end of the first epoch to the end of the last."""
    return tuple((last - first) / (len(ends) - 1) for first, last in zip(ends[0], ends[-1]))


def hand_written(folder: Path, seed: int, epochs: int):
    """The tutorial's program: ((wall, CPU) s/epoch after the first, test accuracy)."""
    keras.utils.set_random_seed(seed)
    options = dict(image_size=(28, 28), batch_size=32, color_mode="grayscale", seed=seed, verbose=False)
    train_ds = keras.utils.image_dataset_from_directory(folder / "train", **options)
    val_ds = keras.utils.image_dataset_from_directory(folder / "test", **options)
    num_classes = len(train_ds.class_names)
    autotune = tf.data.AUTOTUNE
    train_ds = train_ds.cache().shuffle(1000).prefetch(buffer_size=autotune)
    val_ds = val_ds.cache().prefetch(buffer_size=autotune)
    layers = keras.layers
    data_augmentation = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.RandomFlip("horizontal"),
        layers.RandomRotation(0.1),
        layers.RandomZoom(0.1),
    ])
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        data_augmentation,
        layers.Rescaling(1. / 255),
        layers.Conv2D(16, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Dropout(0.2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, name="outputs"),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    ends = EpochEnds()
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=[ends])
    return after_first(ends.ends), float(history.history["val_accuracy"][-1])


class EpochCalls:
    """When each graph call of the fused loop ended, and how many epochs it ran."""

    def __init__(self):
        self.calls = []
        call = runner.train.fused.FusedLoop._call_epochs

        def timed(loop, first, count):
            try:
                return call(loop, first, count)
            finally:
                self.calls.append((count, _clocks()))

        runner.train.fused.FusedLoop._call_epochs = timed

    def after_first(self) -> tuple:
        """As `after_first`; the first call runs the first epoch alone (`FusedLoop.fit`)."""
        assert self.calls[0][0] == 1, self.calls
        epochs = sum(count for count, _ in self.calls[1:])
        return tuple((last - first) / epochs for first, last in zip(self.calls[0][1], self.calls[-1][1]))


def pipe(spec_file: Path, seed: int, epochs: int, sets, calls: EpochCalls):
    """`pipe run` in-process: ((wall, CPU) s/epoch after the first, test accuracy, engine)."""
    spec = load_spec(spec_file, overrides=[f"seed={seed}", f"train.epochs={epochs}", *sets])
    calls.calls.clear()
    ends = EpochEnds()
    fit = keras.Model.fit

    def timed_fit(model, *args, callbacks=None, **kwargs):  # the tf.data path (train.engine: keras)
        return fit(model, *args, callbacks=[*(callbacks or []), ends], **kwargs)

    keras.Model.fit = timed_fit
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = runner.run.pipeline.run_spec(spec, quiet=False)
    finally:
        keras.Model.fit = fit
    manifest = yaml.safe_load((result.run_dir / "manifest.json").read_text())
    seconds = calls.after_first() if manifest["engine"] == "fused" else after_first(ends.ends)
    return seconds, float(result.metrics["test"]["accuracy"]), manifest["engine"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="written by scripts/make_fashion_png_folders.py")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="an override for pipe's side, e.g. train.engine=keras (repeatable)")
    args = parser.parse_args()
    folder = args.folder.resolve()
    calls = EpochCalls()
    rows = []
    print(f"load average at start {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pipe-image-folder-bench-") as tmp:
        spec_file = Path(tmp) / "spec.yaml"
        spec_file.write_text(SPEC.replace("FOLDER", str(folder)).replace("RUNS", str(Path(tmp) / "runs")))
        for i, seed in enumerate(range(1, args.seeds + 1)):
            runs = {}
            for side in (("hand", "pipe") if i % 2 == 0 else ("pipe", "hand")):
                gc.collect()
                if side == "hand":
                    runs[side] = hand_written(folder, seed, args.epochs)
                else:
                    runs[side] = pipe(spec_file, seed, args.epochs, args.sets, calls)
            ((hand_s, hand_cpu), hand_acc), ((pipe_s, pipe_cpu), pipe_acc, engine) = runs["hand"], runs["pipe"]
            rows.append((hand_s, pipe_s, hand_acc, pipe_acc, hand_cpu, pipe_cpu))
            print(f"seed {seed}: s/epoch after the first: hand-written {hand_s:.3f}, pipe ({engine}) {pipe_s:.3f}, "
                  f"ratio {pipe_s / hand_s:.3f} | CPU s/epoch {hand_cpu:.3f}, {pipe_cpu:.3f}, ratio "
                  f"{pipe_cpu / hand_cpu:.3f} | test accuracy {hand_acc:.4f}, {pipe_acc:.4f} | load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    for name, hand, pipe_side in (("s/epoch", 0, 1), ("CPU s/epoch", 4, 5)):
        ratios = [r[pipe_side] / r[hand] for r in rows]
        print(f"median {name} after the first: hand-written {statistics.median(r[hand] for r in rows):.3f}, pipe "
              f"{statistics.median(r[pipe_side] for r in rows):.3f}; median ratio {statistics.median(ratios):.3f} "
              f"(per seed {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    print(f"test accuracy: hand-written {', '.join(f'{r[2]:.4f}' for r in rows)}; "
          f"pipe {', '.join(f'{r[3]:.4f}' for r in rows)}", flush=True)
    print(f"load average at end {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
