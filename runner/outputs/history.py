"""Per-epoch tables: history and trajectories as JSON and CSV, and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from runner.outputs.files import write_json, write_text


def write_history(run_dir: Path, history: dict, durable: bool = True) -> None:
    """history.json and history.csv (one row per epoch, numbered from 1)."""
    write_json(Path(run_dir) / "history.json", history, durable)
    write_table(Path(run_dir) / "history.csv", "epoch", history, start=1, durable=durable)


def write_trajectories(run_dir: Path, trajectories: dict, durable: bool = True) -> None:
    """trajectories.json/csv: each scalar variable, initially (epoch 0) and after each epoch."""
    if not trajectories:
        return
    write_json(Path(run_dir) / "trajectories.json", trajectories, durable)
    write_table(Path(run_dir) / "trajectories.csv", "epoch", trajectories, start=0, durable=durable)


def write_table(path: Path, index: str, columns: dict, start: int = 0, durable: bool = True) -> None:
    """A CSV with an index column and one column per key of `columns` (lists of values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(columns)
    writer.writerow([index, *names])
    rows = max((len(v) for v in columns.values()), default=0)
    for i in range(rows):
        writer.writerow([start + i, *(_cell(columns[n], i) for n in names)])
    write_text(path, buffer.getvalue(), durable)


def _cell(values, i):
    return repr(float(values[i])) if i < len(values) and values[i] is not None else ""


def write_tensorboard(run_dir, history: dict) -> None:
    """Each history column as TensorBoard scalars, laid out as Keras's TensorBoard callback
    lays out fit's epochs (custom loop, fused engine): `tensorboard/train/` and
    `tensorboard/validation/` (the `val_` columns), each value named `epoch_<column>`."""
    import tensorflow as tf

    for folder, columns in (("train", {k: v for k, v in history.items() if not k.startswith("val_")}),
                            ("validation", {k[4:]: v for k, v in history.items() if k.startswith("val_")})):
        if not columns:
            continue
        writer = tf.summary.create_file_writer(str(Path(run_dir) / "tensorboard" / folder))
        with writer.as_default():
            for name, values in columns.items():
                for epoch, value in enumerate(values):
                    tf.summary.scalar(f"epoch_{name}", value, step=epoch)
        writer.close()
