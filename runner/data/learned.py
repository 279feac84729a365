"""Statistics learned from the training split and saved with the run (`preprocessing.json`).

`normalize` ops without `mean`/`std` learn them from train (one pass); tabular CSV
sources learn the vocabularies of their categorical columns and their fill values. The
other splits apply train's; `pipe run` saves them so a later command (prediction) can
rebuild a split's preprocessing from the run's spec and this file alone
(`runner.data.replay.build_split_from_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from runner.spec.errors import SpecError

FILE_NAME = "preprocessing.json"


@dataclass
class Learned:
    """What train taught the pipeline; `frozen` when loaded from a run (never learn again)."""

    normalize: list = field(default_factory=list)   # [{"op": path, "mean": [...], "variance": [...]}]
    columns: dict = field(default_factory=dict)     # column -> {"vocabulary": [...]} / {"fill": value}
    labels: dict = field(default_factory=dict)      # label column -> {"vocabulary": [...]} (text labels)
    frozen: bool = False
    file: Path | None = None  # the preprocessing.json it was loaded from: blamed for what does not fit
    _used: dict = field(default_factory=dict)       # split -> learned normalize ops met so far

    def restart(self) -> None:
        """Start a build: learned normalize ops are matched by their order within each split."""
        self._used = {}

    def is_empty(self) -> bool:
        return not (self.normalize or self.columns or self.labels)

    def to_json(self) -> dict:
        return {"version": 1, "normalize": self.normalize, "columns": self.columns, "labels": self.labels}

    @classmethod
    def from_json(cls, value: dict) -> "Learned":
        return cls(normalize=list(value.get("normalize") or []), columns=dict(value.get("columns") or {}),
                   labels=dict(value.get("labels") or {}), frozen=True)


def load_learned(run_dir) -> Learned:
    """The statistics a run saved (empty when it learned none), ready for `build_datasets`.

    Raises:
        SpecError: naming the file, when it is not what pipe run wrote: not JSON, or a
            normalize statistic that is not finite or a negative variance (an edited file
            would silently change every prediction).
    """
    path = Path(run_dir) / FILE_NAME
    if path.is_symlink():
        raise SpecError("a symbolic link, not the file pipe run wrote; not read", file=path)
    if not path.is_file():
        return Learned(frozen=True)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise SpecError(f"not the JSON pipe run wrote ({type(e).__name__}); rerun the run to rewrite it",
                        file=path) from None
    problem = _learned_problem(value)
    if problem:
        raise SpecError(f"{problem}: the file was edited or is damaged; rerun the run to rewrite it", file=path)
    learned = Learned.from_json(value)
    learned.file = path
    return learned


def _learned_problem(value) -> str | None:
    """What makes a preprocessing.json unusable, or None."""
    if not isinstance(value, dict):
        return "not a JSON object"
    normalize = value.get("normalize") or []
    if not isinstance(normalize, list):
        return "'normalize' is not a list"
    for i, stats in enumerate(normalize):
        if not isinstance(stats, dict):
            return f"normalize[{i}] is not an object"
        for key in ("mean", "variance"):
            try:
                numbers = np.asarray(stats.get(key), dtype=np.float64)
            except (TypeError, ValueError):
                return f"normalize[{i}].{key} is not a list of numbers"
            if numbers.ndim > 1 or numbers.size == 0 or not np.all(np.isfinite(numbers)):
                return f"normalize[{i}].{key} holds a value that is not a finite number"
            if key == "variance" and np.any(numbers < 0):
                return f"normalize[{i}].variance holds a negative value"
        if np.size(stats["mean"]) != np.size(stats["variance"]):
            return f"normalize[{i}] has {np.size(stats['mean'])} means but {np.size(stats['variance'])} variances"
    for key in ("columns", "labels"):
        if not isinstance(value.get(key) or {}, dict):
            return f"'{key}' is not an object"
        for name, entry in (value.get(key) or {}).items():
            problem = _entry_problem(entry, key == "labels")
            if problem:
                return f"{key}.{name}: {problem}"
    return None


def _entry_problem(entry, label: bool) -> str | None:
    """What makes a column's (or a text label's) learned entry unusable, or None."""
    if not isinstance(entry, dict):
        return "not an object"
    vocabulary = entry.get("vocabulary")
    if label and vocabulary is None:
        return "no 'vocabulary'"
    if vocabulary is not None and (not isinstance(vocabulary, list) or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in vocabulary)):
        return "'vocabulary' is not a list of strings or integers"
    if vocabulary is not None and len(set(vocabulary)) != len(vocabulary):
        return "'vocabulary' repeats a value"
    fill = entry.get("fill")
    if "fill" in entry and (not isinstance(fill, (str, int, float)) or isinstance(fill, bool)
                            or (isinstance(fill, float) and not np.isfinite(fill))):
        return "'fill' is not a string or a finite number"
    return None


def learn_normalize_ops(spec, where, dataset, ops, learned: Learned, split):
    """`ops` with each `normalize` lacking mean/std given train's learned ones.

    On train the statistics are learned now, by one pass over the elements as they are just
    before the op (the map's earlier ops applied): per last-axis feature, over every other
    axis and element. The other splits take train's, matched by order.
    """
    from runner.data.ops import build_map_function, select_target

    resolved = list(ops)
    for j, op in enumerate(ops):
        ((name, args),) = op.items()
        args = args or {}
        if name != "normalize" or "mean" in args or "std" in args:
            continue
        index = learned._used.get(split, 0)
        learned._used[split] = index + 1
        if split == "train" and not learned.frozen and index >= len(learned.normalize):
            if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
                raise spec.error(where + ("ops", j, name), "normalize learns its statistics in one pass over "
                                                           "train, which repeats forever here: put it before repeat")
            before = dataset.map(build_map_function(spec, where, resolved[:j], dataset.element_spec)) if j else dataset
            target = args.get("on", "features")
            values = before.map(lambda *e: select_target(spec, where + ("ops", j, name), e, target))
            mean, variance = _moments(values)
            learned.normalize.append({"op": ".".join(map(str, where + ("ops", j))), "on": target,
                                      "mean": mean.tolist(), "variance": variance.tolist()})
        if index >= len(learned.normalize):
            raise spec.error(where + ("ops", j, name), "normalize without mean and std takes the statistics "
                                                       "train learned, but train's stages learn none (add a "
                                                       "normalize without mean/std to train, or give mean and std)")
        stats = learned.normalize[index]
        std = np.sqrt(np.asarray(stats["variance"], dtype=np.float64))
        std = np.where(std > 1e-7, std, 1.0)  # a constant feature stays as it is, centred
        resolved[j] = {"normalize": {**args, "mean": stats["mean"], "std": std.tolist()}}
    return resolved


def _moments(values: tf.data.Dataset):
    """Mean and variance per last-axis feature of every tensor in `values` (float64, one pass)."""
    spec = values.element_spec
    width = spec.shape[-1] if spec.shape.rank else None
    if spec.shape.rank and width is None:
        raise ValueError(f"the last axis of {spec.shape} must be known to learn statistics")
    shape = [width] if spec.shape.rank else []

    def add(state, x):
        x = tf.cast(x, tf.float64)
        axes = list(range(x.shape.rank - 1)) if x.shape.rank else []
        n = tf.cast(tf.size(x), tf.float64) / (width or 1)
        return state[0] + n, state[1] + tf.reduce_sum(x, axes), state[2] + tf.reduce_sum(tf.square(x), axes)

    zero = tf.zeros(shape, tf.float64)
    count, total, squares = values.reduce((tf.constant(0.0, tf.float64), zero, zero), add)
    count = max(float(count), 1.0)
    mean = total.numpy() / count
    return mean, np.maximum(squares.numpy() / count - mean ** 2, 0.0)
