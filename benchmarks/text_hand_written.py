"""The text-classification tutorial's program by hand, on the fortunes corpus, for comparison
with specs/text_classification.yaml (text_folder source + an adapted TextVectorization).

    python scripts/make_fortunes_corpus.py specs/data/fortunes
    python benchmarks/text_hand_written.py specs/data/fortunes [--epochs 30] [--seed 42] [--split keras]
    python benchmarks/text_hand_written.py specs/data/fortunes --model bilstm   # specs/text_bilstm.yaml

The split is pipe's `validation: {fraction: 0.2}` by default: the files in text_folder's
order (class folders alphabetically, files sorted), permuted once by
numpy.random.default_rng(seed), the first 20 % held out — so the spec run with the same
seed validates on the same texts. `--split keras` uses
keras.utils.text_dataset_from_directory's own seeded 20 % subset instead.
TextVectorization (10000 tokens, sequences of 250) adapted on the train texts,
Embedding(16) -> Dropout -> GlobalAveragePooling1D -> Dropout -> Dense(classes) logits,
Adam, sparse categorical cross-entropy, batches of 32. `--model bilstm` is the RNN
tutorial's program of specs/text_bilstm.yaml instead (1000 tokens cut at 100, a masking
Embedding(64), Bidirectional(LSTM(64)), Dense(64, relu), batches of 64, 10 epochs).
Prints the validation accuracy.
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


def datasets(corpus: str, seed: int, split: str, batch_size: int = 32):
    import keras
    import tensorflow as tf

    if split == "keras":
        train, validation = keras.utils.text_dataset_from_directory(
            corpus, batch_size=batch_size, validation_split=0.2, subset="both", seed=seed)
        return train, validation, len(train.class_names)
    (train_files, train_labels), (val_files, val_labels), classes = pipe_split(corpus, seed)

    def read(file, label):
        return tf.io.read_file(file), label

    def dataset(files, labels):
        return tf.data.Dataset.from_tensor_slices((files, labels)).map(read).cache()

    train = dataset(train_files, train_labels).shuffle(len(train_files), seed=seed).batch(batch_size)
    return train, dataset(val_files, val_labels).batch(batch_size), len(classes)


def layers(keras, model: str, classes: int) -> tuple[int, int, list]:
    """(max_tokens, sequence length, the layers after the token ids) of the program."""
    if model == "bilstm":
        return 1000, 100, [keras.layers.Embedding(1000, 64, mask_zero=True),
                           keras.layers.Bidirectional(keras.layers.LSTM(64)),
                           keras.layers.Dense(64, activation="relu"), keras.layers.Dense(classes)]
    return 10000, 250, [keras.layers.Embedding(10000, 16), keras.layers.Dropout(0.2),
                        keras.layers.GlobalAveragePooling1D(), keras.layers.Dropout(0.2), keras.layers.Dense(classes)]


def vectorized_program(keras, tf, train, validation, model_name: str, classes: int):
    """The tutorial's steps after reading: TextVectorization adapted on train and mapped over
    both splits, then the compiled model of the token ids."""
    tokens, length, body = layers(keras, model_name, classes)
    vectorize = keras.layers.TextVectorization(max_tokens=tokens, output_sequence_length=length)
    vectorize.adapt(train.map(lambda text, label: text))
    train = train.map(lambda t, y: (vectorize(t), y)).prefetch(tf.data.AUTOTUNE)
    validation = validation.map(lambda t, y: (vectorize(t), y)).cache().prefetch(tf.data.AUTOTUNE)
    model = keras.Sequential([keras.Input((length,), dtype="int64"), *body])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return train, validation, model


def main(corpus: str, epochs: int, seed: int, split: str = "pipe", model_name: str = "tutorial") -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    train, validation, classes = datasets(corpus, seed, split, 64 if model_name == "bilstm" else 32)
    train, validation, model = vectorized_program(keras, tf, train, validation, model_name, classes)
    history = model.fit(train, validation_data=validation, epochs=epochs, verbose=0)
    result = {"model": model_name, "classes": classes, "split": split, "seed": seed, "epochs": epochs,
              "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
              "best_val_accuracy": round(float(max(history.history["val_accuracy"])), 4),
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("--model", choices=("tutorial", "bilstm"), default="tutorial")
    parser.add_argument("--epochs", type=int, help="default: 30 (tutorial), 10 (bilstm)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--split", choices=("pipe", "keras"), default="pipe")
    arguments = parser.parse_args()
    epochs = arguments.epochs or (10 if arguments.model == "bilstm" else 30)
    main(arguments.corpus, epochs, arguments.seed, arguments.split, arguments.model)
