"""Throughput of a spec's train pipeline against the same pipeline written by hand.

Both run in one process, in alternating repetitions (so machine load hits both alike),
each repetition a fresh pair of pipelines: a first, untimed epoch fills their caches, then
their timed epochs alternate. Building a pipeline (reading the files) is not timed.

    python benchmarks/data_pipeline.py [--spec specs/fashion_mnist.yaml] [--epochs 8] [--repeats 6]

On a busy machine single epochs vary by 10-20%; the median ratio of back-to-back epochs is
the figure to read, and `--control` (hand-written against itself) shows the noise floor.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import keras
import tensorflow as tf

from runner.data import build_datasets
from runner.data.sources import load_source
from runner.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def hand_written(images, labels):
    """The seed lecture's input pipeline, on the same arrays."""

    def normalize_img(image, label):
        return tf.cast(image, tf.float32) / 255., label

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    ds = ds.shuffle(len(images))
    ds = ds.batch(128)
    return ds.prefetch(tf.data.AUTOTUNE)


def epoch_rate(iterator_source) -> float:
    """One epoch through the dataset, touching every batch; images per second."""
    seen = 0
    start = time.perf_counter()
    for features, _ in iterator_source:
        seen += int(features.shape[0])
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(REPO / "specs" / "fashion_mnist.yaml"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--control", action="store_true",
                        help="time the hand-written pipeline against itself: the machine's noise floor")
    args = parser.parse_args()

    spec = load_spec(args.spec)
    seed = spec.doc.get("seed", 0)
    # the hand-written pipeline gets the very arrays the spec's source reads
    source = spec.doc["data"]["train"]["source"]
    loaded = load_source(spec, ("data", "train", "source"), source, seed)
    images, labels = (t.numpy() for t in next(iter(loaded.make().batch(loaded.count))))
    print(f"spec {args.spec}: train source {next(iter(source))}, {loaded.count} images, "
          f"{args.repeats} repeats x {args.epochs} timed epochs each")

    results = {"declared": [], "hand-written": []}
    for repeat in range(args.repeats):
        pipelines = {}
        for name in ("declared", "hand-written"):
            keras.utils.set_random_seed(seed)
            from_spec = name == "declared" and not args.control
            pipelines[name] = build_datasets(spec).train if from_spec else hand_written(images, labels)
            epoch_rate(pipelines[name])  # the first epoch fills the cache; not timed
        # epochs alternate between the two, so load from other processes hits both alike
        for epoch in range(args.epochs):
            order = list(pipelines) if (repeat + epoch) % 2 == 0 else list(pipelines)[::-1]
            for name in order:
                results[name].append(epoch_rate(pipelines[name]))
        print(f"  repeat {repeat + 1}: declared {statistics.median(results['declared'][-args.epochs:]):,.0f} img/s, "
              f"hand-written {statistics.median(results['hand-written'][-args.epochs:]):,.0f} img/s", flush=True)

    for summary in (statistics.median, max):
        declared, hand = summary(results["declared"]), summary(results["hand-written"])
        label = "median" if summary is statistics.median else "best"
        print(f"{label:>6} epoch: declared {declared:,.0f} images/s, hand-written {hand:,.0f} images/s, "
              f"ratio {declared / hand:.3f}")
    paired = statistics.median(d / h for d, h in zip(results["declared"], results["hand-written"]))
    print(f"median ratio of back-to-back epochs: {paired:.3f}")


if __name__ == "__main__":
    main()
