"""`pipe predict`'s output file: CSV, NPY or JSON Lines, one row per input row.

Classifiers get the class (and its name, when the run knows the class names) and the
probabilities: `probability_<i>` for each class of a softmax or categorical output,
`probability_1` (the probability of class 1) for a binary output with one unit. Other
outputs are written as they are (`prediction`, `prediction_<i>`). A model with several
outputs gets one column group (`<output>_class`, ...) or JSON field per output; rows read
from a folder of images start with their file name.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from runner.outputs.files import strict, write_bytes, write_text
from runner.spec.errors import printable

OUTPUT_FORMATS = (".csv", ".npy", ".jsonl")


def probabilities(outputs: np.ndarray, kind: dict) -> np.ndarray:
    """Softmax (multiclass) or sigmoid (binary) of logits; probabilities as they are."""
    if not kind["from_logits"]:
        return outputs
    if kind["kind"] == "multiclass":
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return (1.0 / (1.0 + np.exp(-outputs.astype(np.float64)))).astype(np.float32)


def classes(outputs: np.ndarray, kind: dict) -> np.ndarray | None:
    """The predicted class of each row (None for regression outputs); -1 (no class) for a row
    whose outputs are not all numbers (NaN or infinite): argmax would pick one at random."""
    if kind["kind"] == "multiclass":
        rows = outputs.reshape(len(outputs), -1)
        predicted = rows.argmax(-1)
    elif kind["kind"] == "binary":
        rows = probabilities(outputs, kind).reshape(len(outputs), -1)[:, :1]
        predicted = (rows[:, 0] >= 0.5).astype(np.int64)
    else:
        return None
    with np.errstate(invalid="ignore"):
        unknown = ~np.isfinite(probabilities(rows, kind) if kind["kind"] == "multiclass" else rows).all(-1)
    return np.where(unknown, -1, predicted)


def _columns(outputs: np.ndarray, kind: dict, class_names) -> tuple[list, list]:
    """(column names, one list of cells per row) of one output."""
    predicted = classes(outputs, kind)
    rows = (probabilities(outputs, kind) if predicted is not None else outputs).reshape(len(outputs), -1)
    width = rows.shape[1]
    if predicted is None:
        names = ["prediction"] if width == 1 else [f"prediction_{i}" for i in range(width)]
        return names, [[float(v) for v in row] for row in rows]
    named = class_names is not None and (len(class_names) == width or (kind["kind"] == "binary" and width == 1
                                                                        and len(class_names) == 2))
    head = ["class", *(["class_name"] if named else [])]
    values = ["probability_1"] if kind["kind"] == "binary" and width == 1 else \
        [f"probability_{i}" for i in range(width)]
    cells = []
    for c, row in zip(predicted, rows):
        c = int(c) if c >= 0 else None  # no class: the outputs are not numbers
        cells.append([c, *([None if c is None else str(class_names[c])] if named else []), *(float(v) for v in row)])
    return head + values, cells


def write_predictions(path: Path, outputs: dict, kinds: dict, *, class_names=None, files=None) -> None:
    """Write `outputs` ({None: array} for one output, {name: array} for several) to `path`.

    Args:
        kinds: {output: `{"kind": "multiclass"|"binary"|"regression", "from_logits": bool}`}.
        class_names: the run's class names (a single output's), or None.
        files: each row's file name (rows read from images), or None.

    Raises:
        ValueError: several outputs asked for as one NPY array.
    """
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(outputs) > 1:
            raise ValueError(f"the model has {len(outputs)} outputs ({', '.join(map(str, outputs))}): "
                             "write them to a .csv or .jsonl file")
        ((name, values),) = outputs.items()
        kind = kinds[name]
        buffer = io.BytesIO()
        np.save(buffer, probabilities(values, kind) if classes(values, kind) is not None else values)
        write_bytes(path, buffer.getvalue())
        return
    groups = {name: _columns(values, kinds[name], class_names if len(outputs) == 1 else None)
              for name, values in outputs.items()}
    count = len(next(iter(outputs.values())))
    if suffix == ".csv":
        header = (["file"] if files is not None else []) + [
            column if name is None else f"{name}_{column}" for name, (columns, _) in groups.items() for column in columns]
        lines = [",".join(_csv_cell(h) for h in header)]
        for i in range(count):
            cells = ([files[i]] if files is not None else []) + [c for _, rows in groups.values() for c in rows[i]]
            lines.append(",".join(_csv_cell(c) for c in cells))
        write_text(path, "\n".join(lines) + "\n")
        return
    lines = []
    for i in range(count):
        item = {"file": files[i]} if files is not None else {}
        for name, (columns, rows) in groups.items():
            fields = _json_fields(columns, rows[i])
            if name is None:
                item.update(fields)
            else:
                item[name] = fields
        lines.append(json.dumps(strict(item), allow_nan=False))  # strict JSON: NaN as null
    write_text(path, "\n".join(lines) + "\n")


def _json_fields(columns: list, cells: list) -> dict:
    """A row as JSON: class (and name), then `probabilities` or `prediction` as a list,
    or `probability_1` for a binary output."""
    fields, listed = {}, {}
    for column, cell in zip(columns, cells):
        if column in ("class", "class_name", "probability_1") and not any(
                c.startswith("probability_") and c != "probability_1" for c in columns):
            fields[column] = cell
        elif column in ("class", "class_name"):
            fields[column] = cell
        else:
            listed.setdefault("probabilities" if column.startswith("probability_") else "prediction", []).append(cell)
    fields.update(listed)
    return fields


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    text = printable(value)  # a file or class name: ESC and bidi controls as escapes, never raw
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
