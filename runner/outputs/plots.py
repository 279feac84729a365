"""PNG plots of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import unicodedata
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from runner.outputs.files import write_bytes  # noqa: E402


def drawn(label) -> str:
    """A label as plain text to draw: control and format characters (ESC, bidi overrides) as
    escapes, `$` kept literal (never mathtext)."""
    out = []
    for char in str(label):
        if unicodedata.category(char).startswith("C"):
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        else:
            out.append("\\$" if char == "$" else char)
    return "".join(out)


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a glyph missing from the font is not the user's problem
        warnings.simplefilter("ignore")
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    write_bytes(path, buffer.getvalue())
    return path


def plot_history(history: dict, path: Path) -> Path:
    """Loss and each metric per epoch, training and validation on the same axes."""
    names = [k for k in history if not k.startswith("val_")]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label=name)
        if "val_" + name in history:
            # None where validation_freq skipped an epoch: a gap, not a crash
            values = np.array([np.nan if v is None else v for v in history["val_" + name]], dtype=float)
            validated = ~np.isnan(values)
            axis.plot(epochs[:len(values)][validated[:len(epochs)]], values[validated], marker="o", label="val_" + name)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        axis.set_title(drawn(name))
        axis.legend()
    return _save(figure, path)


def plot_regression(x, y, predictions, path: Path, truth=None) -> Path:
    """1-D regression: the data, the ground truth (when known) and the predictions."""
    order = np.argsort(np.ravel(x))
    xs = np.ravel(x)[order]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.scatter(xs, np.ravel(y)[order], s=8, c="b", label="data")
    if truth is not None:
        axis.plot(xs, np.ravel(truth)[order], c="g", label="ground truth")
    axis.plot(xs, np.ravel(predictions)[order], c="r", label="predictions")
    axis.set_xlabel("x")
    axis.set_ylabel("y")
    axis.legend()
    return _save(figure, path)


def plot_trajectories(trajectories: dict, path: Path, truth: dict | None = None) -> Path:
    """Each scalar variable per epoch (0 = initial), with its true value as a dashed line."""
    figure, axis = plt.subplots(figsize=(6, 4))
    truth = truth or {}
    for i, (name, values) in enumerate(trajectories.items()):
        color = f"C{i}"
        axis.plot(range(len(values)), values, color=color, marker="o", label=name)
        if name in truth:
            axis.axhline(truth[name], color=color, linestyle="--", label=f"true {name}")
    axis.set_xlabel("epoch")
    axis.legend()
    return _save(figure, path)


def plot_confusion_matrix(matrix, path: Path, class_names=None) -> Path:
    """A confusion matrix (rows: true class, columns: predicted class) with counts.

    Classes are labelled by name when the data knows them (tfds), else by index.
    """
    matrix = np.asarray(matrix)
    size = matrix.shape[0]
    labels = [drawn(n) for n in class_names] if class_names and len(class_names) == size else range(size)
    figure, axis = plt.subplots(figsize=(1 + 0.6 * size, 1 + 0.6 * size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    long_names = max(len(str(label)) for label in labels) > 2 if size else False
    axis.set_xticks(range(size), labels, rotation=90 if long_names else 0)
    axis.set_yticks(range(size), labels)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=7,
                  color="white" if count > threshold else "black")
    return _save(figure, path)
