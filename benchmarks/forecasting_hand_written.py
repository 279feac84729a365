"""specs/forecasting.yaml written by hand in Keras, and the naive last-value forecast.

The same series (specs/data/co2_weekly.csv), the same splits (the last 10% of the weeks is
test, the 20% before it validation, in time order), the same normalization (train's mean and
standard deviation), the same windows (52 weeks -> the next week, with
keras.utils.timeseries_dataset_from_array within each split), model, optimizer, epochs and
seed. Prints the test MAE in normalized units and in ppm, beside the naive forecast's (the
window's last value) on the same test windows.

    python benchmarks/forecasting_hand_written.py [--epochs 30] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CSV = Path(__file__).resolve().parents[1] / "specs" / "data" / "co2_weekly.csv"
LENGTH, BATCH = 52, 32


def splits(values: np.ndarray):
    """(train, validation, test) rows as pipe's fractions cut them: test first, of the whole."""
    n = len(values)
    test, validation = round(n * 0.1), round(n * 0.2)
    return values[:n - test - validation], values[n - test - validation:n - test], values[n - test:]


def windows(part: np.ndarray, shuffle: bool = False, seed: int | None = None):
    import keras

    return keras.utils.timeseries_dataset_from_array(part[:-1], part[LENGTH:], sequence_length=LENGTH,
                                                     batch_size=BATCH, shuffle=shuffle, seed=seed)


def main(epochs: int, seed: int) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    values = np.loadtxt(CSV, delimiter=",", skiprows=1, usecols=1, dtype=np.float32)[:, None]
    train, validation, test = splits(values)
    mean, std = train.mean(), train.std()
    train, validation, test = ((p - mean) / std for p in (train, validation, test))
    # The last value plus a learned linear correction of the window relative to its last value
    # (the tutorial's residual forecaster): the correction starts at zero, so the model starts
    # as the naive forecast, and it does not depend on the series' level.
    window = keras.Input((LENGTH, 1), name="window")
    last = keras.layers.Flatten(name="last")(keras.layers.Cropping1D((LENGTH - 1, 0), name="last_step")(window))
    relative = keras.layers.Subtract(name="relative")([keras.layers.Flatten(name="flat")(window), last])
    change = keras.layers.Dense(1, kernel_initializer="zeros", name="change")(relative)
    model = keras.Model(window, keras.layers.Add(name="forecast")([last, change]))
    model.compile(optimizer=keras.optimizers.Adam(0.0003), loss="mse", metrics=["mae"])
    model.fit(windows(train, True, seed), validation_data=windows(validation), epochs=epochs, verbose=0)
    _, mae = model.evaluate(windows(test), verbose=0)
    x = np.concatenate([b[0] for b in windows(test).as_numpy_iterator()])
    y = np.concatenate([b[1] for b in windows(test).as_numpy_iterator()])
    naive = float(np.mean(np.abs(x[:, -1, 0] - y[:, 0])))
    result = {"test_mae": round(float(mae), 4), "naive_mae": round(naive, 4),
              "test_mae_ppm": round(float(mae) * float(std), 3), "naive_mae_ppm": round(naive * float(std), 3),
              "test_windows": len(y)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    arguments = parser.parse_args()
    main(arguments.epochs, arguments.seed)
