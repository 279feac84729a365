"""The fused engine on text and on a table, against the programs a user would write by hand.

As benchmarks/fused.py does for Fashion-MNIST: alternating repetitions in one process
(hand-written first for even seeds, pipe first for odd ones), one seed per repetition,
per-epoch training time and the last epoch's validation accuracy of each side.

- text: the text-classification tutorial's program (benchmarks/text_hand_written.py: tf.data
  read/cache/shuffle/batch, TextVectorization adapted on train and mapped over the batches,
  Embedding-Dropout-GlobalAveragePooling1D-Dropout-Dense, `fit` with validation) against
  `specs/text_classification.yaml` with `train.engine: auto` (fused: the texts looked up
  once by the model's TextVectorization and held as ids). Same split (pipe's seeded 20 %).
- imbalanced: the imbalanced-data tutorial's program on the penguins table by hand (pandas
  gaps filled with train's means, a stratified seeded 20 % held out, Normalization adapted
  on train, balanced class weights, the output bias at log class priors, tf.data + `fit`)
  against `specs/imbalanced.yaml` with `train.engine: auto`.

What is timed: on the hand-written side `fit` (its first epoch traces the step and fills the
cache); on pipe's side the training `pipe run` calls up to the end of its last epoch (the
splits into memory and looked up, tracing, every epoch). Neither includes the TensorFlow
import, reading files, adapting the preprocessing layers or saving.

    python scripts/make_fortunes_corpus.py specs/data/fortunes
    python benchmarks/fused_text_tables.py [--only text,imbalanced] [--seeds 3] [--set device.jit_compile=true]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import yaml

from fused import SPECS, Timer, pipe_run  # benchmarks/fused.py, beside this script
from text_hand_written import datasets, vectorized_program

CORPUS = SPECS / "data" / "fortunes"
PENGUINS = SPECS / "data" / "penguins.csv"


def hand_text(seed, epochs):
    """(training s/epoch, validation accuracy) of the tutorial's program."""
    keras.utils.set_random_seed(seed)
    train, validation, classes = datasets(str(CORPUS), seed, "pipe")
    train, validation, model = vectorized_program(keras, tf, train, validation, "tutorial", classes)
    start = time.perf_counter()
    history = model.fit(train, validation_data=validation, epochs=epochs, verbose=0)
    return (time.perf_counter() - start) / epochs, float(history.history["val_accuracy"][-1])


def hand_imbalanced(seed, epochs):
    """(training s/epoch, validation accuracy) of the imbalanced-data program on penguins."""
    import pandas as pd

    keras.utils.set_random_seed(seed)
    table = pd.read_csv(PENGUINS)
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    classes = sorted(table["species"].unique())
    y = table["species"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    rng = np.random.default_rng(seed)
    held = np.concatenate([rng.permutation(np.where(y == c)[0])[:round(0.2 * np.sum(y == c))]
                           for c in range(len(classes))])
    kept = np.setdiff1d(np.arange(len(y)), held)
    x = table[columns].fillna(table[columns].iloc[kept].mean()).to_numpy(np.float32)
    normalize = keras.layers.Normalization()
    normalize.adapt(x[kept])
    counts = np.bincount(y[kept], minlength=len(classes))
    class_weight = {c: len(kept) / (len(classes) * n) for c, n in enumerate(counts)}
    prior = np.log(counts / counts.sum())
    model = keras.Sequential([keras.Input((4,)), normalize, keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(len(classes), bias_initializer=keras.initializers.Constant(prior))])
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    train = tf.data.Dataset.from_tensor_slices((x[kept], y[kept])).cache().shuffle(len(kept)).batch(32)
    validation = tf.data.Dataset.from_tensor_slices((x[held], y[held])).batch(32).cache()
    start = time.perf_counter()
    history = model.fit(train.prefetch(tf.data.AUTOTUNE), validation_data=validation, epochs=epochs, verbose=0,
                        class_weight=class_weight)
    return (time.perf_counter() - start) / epochs, float(history.history["val_accuracy"][-1])


def compare(kind, hand, spec_name, metric, timer, seeds, epochs, folder, sets=()):
    doc = yaml.safe_load((SPECS / spec_name).read_text())
    doc["outputs"] = {"dir": str(folder / "runs"), "plots": {"enabled": False}}
    doc["train"]["engine"] = "auto"
    spec = SPECS / f".bench-{spec_name}"  # beside the spec: its data paths stay as written
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    rows = []
    try:
        for i, seed in enumerate(seeds):
            runs = {}
            for side in (("hand", "pipe") if i % 2 == 0 else ("pipe", "hand")):
                gc.collect()
                if side == "hand":
                    runs["hand"] = hand(seed, epochs)
                else:
                    _, metrics, engine = pipe_run(timer, spec, [f"seed={seed}", f"train.epochs={epochs}", *sets],
                                                       folder)
                    runs["pipe"] = (timer.training / epochs, metrics["validation"][metric], engine)
            (hand_s, hand_acc), (pipe_s, pipe_acc, engine) = runs["hand"], runs["pipe"]
            rows.append((hand_s, pipe_s, hand_acc, pipe_acc))
            print(f"{kind}{' ' + ' '.join(sets) if sets else ''} seed {seed}: s/epoch hand-written {hand_s:.4f}, pipe ({engine}) {pipe_s:.4f}, ratio "
                  f"{pipe_s / hand_s:.3f} | validation accuracy {hand_acc:.4f}, {pipe_acc:.4f} | load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    finally:
        spec.unlink()
    ratios = [r[1] / r[0] for r in rows]
    kind = f"{kind}{' ' + ' '.join(sets) if sets else ''}"
    print(f"{kind}: median s/epoch hand-written {statistics.median(r[0] for r in rows):.4f}, pipe "
          f"{statistics.median(r[1] for r in rows):.4f}; median ratio {statistics.median(ratios):.3f} "
          f"(per seed {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    print(f"{kind}: validation accuracy hand-written {', '.join(f'{r[2]:.4f}' for r in rows)}; "
          f"pipe {', '.join(f'{r[3]:.4f}' for r in rows)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="text,imbalanced")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--text-epochs", type=int, default=30)
    parser.add_argument("--imbalanced-epochs", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="an override for pipe's side, e.g. device.jit_compile=true (repeatable)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    timer = Timer()
    seeds = list(range(1, args.seeds + 1))
    with tempfile.TemporaryDirectory(prefix="pipe-fused-text-bench-") as tmp:
        if "text" in only:
            compare("text", hand_text, "text_classification.yaml", "SparseCategoricalAccuracy", timer, seeds,
                    args.text_epochs, Path(tmp), args.sets)
        if "imbalanced" in only:
            compare("imbalanced", hand_imbalanced, "imbalanced.yaml", "accuracy", timer, seeds,
                    args.imbalanced_epochs, Path(tmp), args.sets)


if __name__ == "__main__":
    main()
