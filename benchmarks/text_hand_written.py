"""The text-classification tutorial's program by hand, on the fortunes corpus, for comparison
with specs/text_classification.yaml (text_folder source + an adapted TextVectorization).

    python scripts/make_fortunes_corpus.py specs/data/fortunes
    python benchmarks/text_hand_written.py specs/data/fortunes [--epochs 30] [--seed 42] [--split keras]

The split is pipe's `validation: {fraction: 0.2}` by default: the files in text_folder's
order (class folders alphabetically, files sorted), permuted once by
numpy.random.default_rng(seed), the first 20 % held out — so the spec run with the same
seed validates on the same texts. `--split keras` uses
keras.utils.text_dataset_from_directory's own seeded 20 % subset instead.
TextVectorization (10000 tokens, sequences of 250) adapted on the train texts,
Embedding(16) -> Dropout -> GlobalAveragePooling1D -> Dropout -> Dense(classes) logits,
Adam, sparse categorical cross-entropy, batches of 32. Prints the validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def pipe_split(corpus: str, seed: int, fraction: float = 0.2):
    """(train, validation) as ((paths, labels), (paths, labels)), as pipe's validation fraction."""
    import numpy as np

    root = Path(corpus)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*.txt") if p.is_file())
        files += [str(p) for p in found]
        labels += [label] * len(found)
    files, labels = np.array(files), np.array(labels, np.int64)
    held = round(len(files) * fraction)
    order = np.random.default_rng(seed).permutation(len(files))
    return (files[order[held:]], labels[order[held:]]), (files[order[:held]], labels[order[:held]]), classes


def datasets(corpus: str, seed: int, split: str):
    import keras
    import tensorflow as tf

    if split == "keras":
        train, validation = keras.utils.text_dataset_from_directory(
            corpus, batch_size=32, validation_split=0.2, subset="both", seed=seed)
        return train, validation, len(train.class_names)
    (train_files, train_labels), (val_files, val_labels), classes = pipe_split(corpus, seed)

    def read(file, label):
        return tf.io.read_file(file), label

    def dataset(files, labels):
        return tf.data.Dataset.from_tensor_slices((files, labels)).map(read).cache()

    train = dataset(train_files, train_labels).shuffle(len(train_files), seed=seed).batch(32)
    return train, dataset(val_files, val_labels).batch(32), len(classes)


def main(corpus: str, epochs: int, seed: int, split: str = "pipe") -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    train, validation, classes = datasets(corpus, seed, split)
    vectorize = keras.layers.TextVectorization(max_tokens=10000, output_sequence_length=250)
    vectorize.adapt(train.map(lambda text, label: text))
    train = train.map(lambda t, y: (vectorize(t), y)).prefetch(tf.data.AUTOTUNE)
    validation = validation.map(lambda t, y: (vectorize(t), y)).cache().prefetch(tf.data.AUTOTUNE)
    model = keras.Sequential([
        keras.Input((250,), dtype="int64"), keras.layers.Embedding(10000, 16), keras.layers.Dropout(0.2),
        keras.layers.GlobalAveragePooling1D(), keras.layers.Dropout(0.2), keras.layers.Dense(classes)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(train, validation_data=validation, epochs=epochs, verbose=0)
    result = {"classes": classes, "split": split, "seed": seed, "epochs": epochs,
              "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
              "best_val_accuracy": round(float(max(history.history["val_accuracy"])), 4),
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", choices=("pipe", "keras"), default="pipe")
    arguments = parser.parse_args()
    main(arguments.corpus, arguments.epochs, arguments.seed, arguments.split)
