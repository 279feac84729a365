"""Raw text for `pipe predict` on a run whose model reads strings: a `text_folder` source,
or a CSV source whose only feature is a `text:` column.

A folder is read as text_folder reads a class folder: every `.txt` file under it, sorted by
path, one text each (its bytes); a single `.txt` file is one text. For a text_folder run, a
CSV input has a header row and the texts in its `text` column (or its only column). Anything
else is left to `runner.commands.prediction`'s readers (a CSV input of a CSV run is read with the run's
own CSV options).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from runner.spec import Spec


def read_texts(spec, input_path: Path) -> tuple[np.ndarray | None, list | None]:
    """(the input's texts as an array of bytes, each text's file name or None for a CSV), or
    (None, None) when the run does not read text or the input is not text.

    Raises:
        SpecError: no .txt file in the folder; a CSV without a text column; no texts.
    """
    kind = _text_source(spec)
    if kind is None:
        return None, None
    files = None
    name = input_path.name.lower()
    if input_path.is_dir():
        files = sorted(p for p in input_path.rglob("*.txt") if p.is_file())
        if not files:
            raise _error(input_path, f"no text files (.txt) under {input_path}")
        texts, files = [f.read_bytes() for f in files], [f.relative_to(input_path).as_posix() for f in files]
    elif name.endswith(".txt") and input_path.is_file():
        texts, files = [input_path.read_bytes()], [input_path.name]
    elif kind == "text_folder" and name.endswith(".csv") and input_path.is_file():
        texts = _csv_texts(input_path)
    else:
        return None, None
    return np.array(texts, dtype=object), files


def _text_source(spec) -> str | None:
    """'text_folder' or 'csv' when the run's model reads one string per element, else None."""
    for split in ("test", "train"):
        source = spec.sections.data.split(split).source
        if not source:
            continue
        if "text_folder" in source:
            return "text_folder"
        options = source.get("csv")
        if isinstance(options, dict):
            text, features = list(options.get("text") or []), options.get("features")
            if text and isinstance(features, list) and len(features) == 1 and features[0] in text:
                return "csv"
        return None
    return None


def _csv_texts(path: Path) -> list[bytes]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"))))
    if not rows:
        raise _error(path, "the input holds no rows")
    header = [h.strip() for h in rows[0]]
    if "text" in header:
        column = header.index("text")
    elif len(header) == 1:
        column = 0
    else:
        raise _error(path, f"which column holds the texts? name it 'text' in the header row (columns: "
                           f"{', '.join(header)})")
    texts = [row[column].encode("utf-8") if column < len(row) else b"" for row in rows[1:] if row]
    if not texts:
        raise _error(path, "the input holds no rows below its header")
    return texts


def _error(path: Path, message: str):
    return Spec.for_input(path).error((), message)
