"""A spec's `sweep:` section: its search space read and checked, without TensorFlow or Optuna.

A parameter's path is written as `--set` writes it (`train.optimizer.Adam.learning_rate`);
`layers[1]` is the same as `layers.1`. `pipe validate` checks that each path exists and
that the spec stays schema- and rule-valid at every choice and at both ends of every range,
one parameter at a time, the others as the spec has them; an error is located at the
parameter and says which value breaks what.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from runner.spec.errors import SpecError, did_you_mean

_MAXIMIZED = re.compile(r"acc|auc|precision|recall|f1|iou|r2|top_k|fbeta", re.IGNORECASE)


@dataclass
class Parameter:
    """One searched value: its path as written, its `--set` key, its distribution."""

    name: str  # as written in the spec
    key: str  # the `--set` key: dots only
    kind: str  # choice, int or float
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def ends(self) -> list:
        """The values `pipe validate` tries: every choice, or both ends of the range."""
        if self.kind == "choice":
            return list(self.choices)
        high = self.high
        if self.step and self.kind == "int":
            high = self.low + (self.high - self.low) // self.step * self.step
        return [self.low, high] if high != self.low else [self.low]


@dataclass
class Sweep:
    """The `sweep:` section, with its defaults filled in."""

    parameters: list
    split: str
    metric: str
    direction: str
    trials: int = 20
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None

    @property
    def objective(self) -> str:
        return f"{self.split}.{self.metric}"

    def epoch_key(self, validated: str = "validation") -> str | None:
        """The key of the epoch logs that holds the objective (for pruning), or None."""
        if self.split == "train":
            return self.metric
        if self.split == validated:
            return f"val_{self.metric}"
        return None


def set_key(name: str) -> str:
    """`model.sequential.layers[1].Dense.units` -> `model.sequential.layers.1.Dense.units`."""
    return re.sub(r"\[(-?\d+)\]", r".\1", name)


def override_text(key: str, value) -> str:
    """A `--set` text that sets `key` to exactly `value` (parsed back as YAML)."""
    return f"{key}={yaml_value(value)}"


def yaml_value(value) -> str:
    """`value` as flow YAML that parses back to the same value (1e-05 is a string to YAML 1.1)."""
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent}"
        return text
    return json.dumps(value)


def read_sweep(spec) -> Sweep | None:
    """The spec's sweep (None without a `sweep:` section); assumes a schema-valid spec."""
    section = spec.doc.get("sweep")
    if not section:
        return None
    parameters = []
    for name, dist in section["parameters"].items():
        kind = next(k for k in ("choice", "int", "float") if k in dist)
        if kind == "choice":
            parameters.append(Parameter(name, set_key(name), kind, choices=list(dist["choice"])))
        else:
            low, high = dist[kind]
            parameters.append(Parameter(name, set_key(name), kind, low=low, high=high, step=dist.get("step"),
                                        log=bool(dist.get("log", False))))
    split, metric = section["objective"].split(".", 1)
    direction = section.get("direction") or ("maximize" if _MAXIMIZED.search(metric) else "minimize")
    return Sweep(parameters, split, metric, direction, trials=section.get("trials", 20),
                 timeout=section.get("timeout"), sampler=section.get("sampler", "tpe"),
                 pruner=section.get("pruner", "median"), seed=section.get("seed"))


def sweep_errors(spec, files, overrides=()) -> list[SpecError]:
    """Every mistake of the spec's `sweep:` section, located at its parameters (none without one).

    `files` and `overrides` are what `spec` was loaded from: each value of the space is
    loaded the same way with that value set.
    """
    from runner.spec.document import load_spec

    sweep = read_sweep(spec)
    if sweep is None:
        return []
    errors = []
    where = ("sweep", "parameters")
    for p in sweep.parameters:
        at = where + (p.name,)
        if p.kind != "choice":
            errors += _range_errors(spec, p, at)
            if errors and errors[-1].path == at:
                continue
        missing = _missing(spec.doc, p.key)
        if missing:
            errors.append(spec.error(at, missing))
            continue
        for value in p.ends():
            try:
                load_spec(files, [*overrides, override_text(p.key, value)])
            except SpecError as e:
                first = getattr(e, "errors", [e])[0]
                problem = first.message + (f" ({first.hint})" if first.hint else "")
                errors.append(spec.error(at, f"at {p.name}={yaml_value(value)} the spec is invalid: {problem}"))
                break
    if sweep.sampler == "grid":
        for p in sweep.parameters:
            if p.kind == "float":
                errors.append(spec.error(where + (p.name,), "the grid sampler takes choice and int parameters; "
                                                            "give a choice of values"))
    if sweep.split not in ("train",) and sweep.split not in spec.doc["data"]:
        errors.append(spec.error(("sweep", "objective"), f"there is no data.{sweep.split} split to measure "
                                                         f"{sweep.metric} on", at_value=True))
    else:
        errors += _objective_errors(spec, sweep)
    return errors


def _objective_errors(spec, sweep: Sweep) -> list[SpecError]:
    """The objective's metric must be one the run measures on its split: else every trial
    trains to the end and is recorded failed ("the run measured no test.nope")."""
    from runner.spec.training_rules import logged_names

    logged = logged_names(spec)  # the names callbacks may monitor, as fit logs them
    if logged is None:  # several outputs, or a metric whose name is only known once built
        return []
    measured = logged if sweep.split == "train" else logged - {"learning_rate"}  # the optimizer's, train's logs only
    if sweep.metric in measured:
        return []
    names = sorted(measured)
    return [spec.error(("sweep", "objective"), f"the run measures no {sweep.metric!r} on {sweep.split} "
                                               f"(it measures: {', '.join(f'{sweep.split}.{n}' for n in names)})",
                       did_you_mean(sweep.metric, names), at_value=True)]


def _range_errors(spec, p: Parameter, at) -> list[SpecError]:
    if p.low > p.high:
        return [spec.error(at, f"the range [{p.low}, {p.high}] is empty: low is above high")]
    if p.log and p.low <= 0:
        return [spec.error(at, f"a log range starts above 0, not at {p.low}")]
    if p.log and p.step:
        return [spec.error(at, "give log or step, not both")]
    if p.kind == "int" and p.step is not None and p.step != int(p.step):
        return [spec.error(at, f"an int range's step is a whole number, not {p.step}")]
    return []


def _missing(doc, key: str) -> str | None:
    """Why `key` names no place in the spec, or None when it does (its last key may be one the
    spec leaves at its default, such as an optimizer's learning_rate)."""
    node, walked = doc, []
    parts = key.split(".")
    for i, part in enumerate(parts):
        index = int(part) if part.lstrip("-").isdigit() else None
        if isinstance(node, list) and index is not None and -len(node) <= index < len(node):
            node = node[index]
        elif isinstance(node, dict) and (part in node or (i == len(parts) - 1 and index is None)):
            if part not in node:
                return None
            node = node[part]
        else:
            shown = ".".join(walked) or "the spec"
            if isinstance(node, list):
                return f"{shown} has {len(node)} items; no index {part}"
            if isinstance(node, dict):
                known = ", ".join(map(str, list(node)[:8]))
                return f"{shown} has no '{part}'" + (f" (it has {known})" if known else "")
            return f"{shown} is a single value; it has no '{part}'"
        walked.append(part)
    return None
