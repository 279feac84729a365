"""The programs pipe is measured against, written by hand as a user would.

- The seed lecture's linear regression (`w*x + b`, 201 points, full batch, SGD 0.1): its
  own eager loop, and the same step under `tf.function`. Both record W, b and the loss of
  every epoch, as the seed does (and as pipe's history and trajectories do).
- The seed's MNIST program on Fashion-MNIST: IDX files read with numpy, map(normalize) /
  cache / shuffle / batch(128) / prefetch, Flatten-Dense(128, relu)-Dense(10), Adam(1e-3),
  fit with the test split as validation, evaluate, save model.keras and the history.

Run as a script it is one whole process, the counterpart of one `pipe run`:

    python benchmarks/hand_written.py fashion_mnist --epochs 3 --out /tmp/hand
    python benchmarks/hand_written.py linear_regression --epochs 2000 [--eager]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def linear_regression(epochs: int, compiled: bool = True) -> dict:
    """The seed's first program; returns the training loop's seconds and final values."""
    import tensorflow as tf

    tf.random.set_seed(42)
    x = tf.linspace(-2.0, 2.0, 201)
    y = 3.0 * x + 2.0 + tf.random.normal([201])

    class Model(tf.Module):
        def __init__(self):
            self.w = tf.Variable(5.0)
            self.b = tf.Variable(0.0)

        def __call__(self, x):
            return self.w * x + self.b

    def loss(target_y, predicted_y):
        return tf.reduce_mean(tf.square(target_y - predicted_y))

    def train(model, x, y, learning_rate):
        with tf.GradientTape() as tape:
            current_loss = loss(y, model(x))
        dw, db = tape.gradient(current_loss, [model.w, model.b])
        model.w.assign_sub(learning_rate * dw)
        model.b.assign_sub(learning_rate * db)
        return current_loss

    model = Model()
    step = tf.function(train) if compiled else train
    ws, bs, losses = [], [], []
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        current_loss = step(model, x, y, 0.1)
        ws.append(model.w.numpy())
        bs.append(model.b.numpy())
        losses.append(current_loss.numpy())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "w": float(ws[-1]), "b": float(bs[-1]), "loss": float(losses[-1])}


def read_idx(path):
    """An IDX file (gzip) as a numpy array: magic number, dimensions, then uint8 data."""
    import numpy as np

    with gzip.open(path, "rb") as file:
        raw = file.read()
    rank = raw[3]
    dims = np.frombuffer(raw, ">u4", count=rank, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def seed_mnist_model():
    """The seed's MNIST model, compiled: Flatten-Dense(128, relu)-Dense(10), Adam(1e-3)."""
    import keras

    model = keras.models.Sequential([
        keras.Input((28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    return model


def fashion_mnist(epochs: int, out: Path, data: Path = FASHION_MNIST, seed: int = 42, callbacks=()) -> dict:
    """The seed's MNIST program on Fashion-MNIST; returns its test metrics."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)

    def normalize_img(image, label):
        return tf.cast(image, tf.float32) / 255., label

    train_x, train_y = read_idx(data / "train-images-idx3-ubyte.gz"), read_idx(data / "train-labels-idx1-ubyte.gz")
    test_x, test_y = read_idx(data / "t10k-images-idx3-ubyte.gz"), read_idx(data / "t10k-labels-idx1-ubyte.gz")
    ds_train = tf.data.Dataset.from_tensor_slices((train_x, train_y))
    ds_train = ds_train.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE)
    ds_train = ds_train.cache().shuffle(len(train_x)).batch(128).prefetch(tf.data.AUTOTUNE)
    ds_test = tf.data.Dataset.from_tensor_slices((test_x, test_y))
    ds_test = ds_test.map(normalize_img, num_parallel_calls=tf.data.AUTOTUNE)
    ds_test = ds_test.batch(128).cache().prefetch(tf.data.AUTOTUNE)

    model = seed_mnist_model()
    history = model.fit(ds_train, epochs=epochs, validation_data=ds_test, callbacks=list(callbacks), verbose=0)
    metrics = model.evaluate(ds_test, verbose=0, return_dict=True)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    (out / "history.json").write_text(json.dumps(history.history, default=float))
    return {k: float(v) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", choices=["fashion_mnist", "linear_regression"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("hand-run"))
    parser.add_argument("--eager", action="store_true", help="linear regression: the seed's eager loop")
    args = parser.parse_args()
    if args.program == "fashion_mnist":
        print(json.dumps(fashion_mnist(args.epochs, args.out)))
    else:
        print(json.dumps(linear_regression(args.epochs, compiled=not args.eager)))


if __name__ == "__main__":
    main()
