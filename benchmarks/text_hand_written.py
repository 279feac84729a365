"""The text-classification tutorial's program by hand, on the fortunes corpus, for comparison
with a pipe spec of the same program (text_folder source + an adapted TextVectorization).

    python scripts/make_fortunes_corpus.py /tmp/fortunes
    python benchmarks/text_hand_written.py /tmp/fortunes [--epochs 10] [--seed 7]

keras.utils.text_dataset_from_directory with a 20% validation subset (seeded),
TextVectorization (10000 tokens, sequences of 250) adapted on the train texts,
Embedding(16) -> Dropout -> GlobalAveragePooling1D -> Dropout -> Dense(classes) logits,
Adam, sparse categorical cross-entropy. Prints the validation accuracy.
"""

from __future__ import annotations

import argparse
import json


def main(corpus: str, epochs: int, seed: int) -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    train, validation = keras.utils.text_dataset_from_directory(
        corpus, batch_size=32, validation_split=0.2, subset="both", seed=seed)
    classes = len(train.class_names)
    vectorize = keras.layers.TextVectorization(max_tokens=10000, output_sequence_length=250)
    vectorize.adapt(train.map(lambda text, label: text))
    train = train.map(lambda t, y: (vectorize(t), y)).cache().prefetch(tf.data.AUTOTUNE)
    validation = validation.map(lambda t, y: (vectorize(t), y)).cache().prefetch(tf.data.AUTOTUNE)
    model = keras.Sequential([
        keras.Input((250,), dtype="int64"), keras.layers.Embedding(10000, 16), keras.layers.Dropout(0.2),
        keras.layers.GlobalAveragePooling1D(), keras.layers.Dropout(0.2), keras.layers.Dense(classes)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit(train, validation_data=validation, epochs=epochs, verbose=0)
    result = {"classes": classes, "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
              "best_val_accuracy": round(float(max(history.history["val_accuracy"])), 4)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()
    main(arguments.corpus, arguments.epochs, arguments.seed)
