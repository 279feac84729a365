"""Whether an input CSV can fit a finished run, said in the run's terms before it is read.

A CSV whose rows hold another number of values than the run's model takes (a 5-column table
given to an image run) fails deep in the parser or the model; and the parser's advice is
about the spec (declare a fill policy), which a finished run cannot change. This compares
the file's columns with the values the model takes per row, when the run's data keeps that
count from the file to the model.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from pathlib import Path

# Map ops after which a row still holds as many values as the file gave (the others, such as
# one_hot or resize, change the count; augment only trains). A `window` stage makes rows series.
_COUNT_KEEPING_OPS = ("cast", "scale", "normalize", "reshape", "flatten", "transpose", "clip", "augment")
_TABULAR = ("features", "categorical", "fill", "text")  # columns encoded: their count is not the model's


def model_row_shape(spec) -> tuple | None:
    """The shape of one row the run's model takes: the sequential input_shape, or a
    functional model's only input; None when the spec does not say it as numbers."""
    shape = spec.get("model", "sequential", "input_shape")
    inputs = spec.get("model", "functional", "inputs")
    if shape is None and isinstance(inputs, dict) and len(inputs) == 1:
        only = next(iter(inputs.values()))
        shape = only.get("shape") if isinstance(only, dict) else None
    if isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                                                 for d in shape):
        return tuple(shape)
    return None


def _keeps_the_count(stages) -> bool:
    for stage in stages if isinstance(stages, list) else []:
        ((name, args),) = stage.items()
        if name in ("window", "unbatch"):
            return False
        if name == "map":
            for op in (args or {}).get("ops", []):
                ((op_name, op_args),) = op.items()
                if (op_args or {}).get("on", "features") != "label" and op_name not in _COUNT_KEEPING_OPS:
                    return False
    return True


def columns_problem(spec, declared_csv: dict | None, input_path: Path) -> str | None:
    """Why the CSV `input_path` cannot fit the run's model, or None.

    Args:
        declared_csv: the run's own CSV source options when it read a CSV (its label column
            may be in the file too), None when it read arrays (NPZ, images, ...).
    """
    shape, line = model_row_shape(spec), first_line(input_path)
    split = "test" if spec.get("data", "test", "source") else "train"  # the stages predict applies
    if shape is None or line is None or not _keeps_the_count(spec.get("data", split, "stages", default=[])):
        return None
    options = declared_csv or {}
    if any(k in options for k in _TABULAR):
        return None
    columns = len(next(csv.reader([line], delimiter=options.get("delimiter", ","))))
    values = math.prod(shape)
    label = options.get("label", -1) if declared_csv is not None else None
    labels = 0 if label is None else len(label) if isinstance(label, list) else 1
    if columns in (values, values + labels):
        return None
    with_label = f" (or {values + labels} with the label column)" if labels else ""
    return (f"the run's model takes {values} values per row (input {shape}){with_label}; "
            f"{input_path.name} has {columns} column{'s' if columns != 1 else ''}")


def first_line(path: Path) -> str | None:
    """The first line of a text file, plain or gzip (None when it cannot be read)."""
    try:
        with open(path, "rb") as file:
            gzipped = file.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as file:
            return file.readline(1 << 20).rstrip("\r\n")
    except (OSError, EOFError, zlib.error):
        return None


def shape_problem(element_spec, model) -> str | None:
    """Rows of a shape other than the one the model's single input declares, or None. Keras
    takes them when the model pools over any size (a Conv2D then GlobalAveragePooling2D),
    so the predictions would be of inputs the run never trained on."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1 or not hasattr(element_spec, "shape"):
        return None
    declared, given = tuple(inputs[0].shape)[1:], tuple(element_spec.shape)
    if len(declared) != len(given) or all(d is None or g is None or d == g for d, g in zip(declared, given)):
        return None  # a rank apart is the model's own message to give
    return (f"the run's model takes rows of shape {_shown(declared)}; the input's rows have shape {_shown(given)} "
            "(after the run's preprocessing)")


def _shown(shape) -> str:
    return "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
