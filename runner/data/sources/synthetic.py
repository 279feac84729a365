"""The `synthetic` source: seeded x (linspace, uniform, normal), y = f(x) + Gaussian noise."""

from __future__ import annotations

import numpy as np

from runner.data.source import Source, array_source


def synthetic_truth(source_config: dict, x: np.ndarray) -> np.ndarray | None:
    """The noise-free y of a synthetic source at `x` (None when the source is not synthetic).

    Args:
        source_config: the `synthetic:` mapping, or a whole `source:` mapping.
        x: the inputs, any shape.
    """
    if "synthetic" in source_config:
        source_config = source_config["synthetic"]
    if not isinstance(source_config, dict) or "y" not in source_config:
        return None
    ((kind, options),) = source_config["y"].items()
    x = np.asarray(x, dtype=np.float64)
    if kind == "linear":
        y = options["w"] * x + options["b"]
    else:
        y = np.polynomial.polynomial.polyval(x, options["coefficients"])
    return y.astype(np.float32)


def load(spec, path, options, seed) -> Source:
    seed = options.get("seed", seed if seed is not None else 0)
    rng = np.random.default_rng(seed)
    ((kind, draw),) = options["x"].items()
    if kind == "linspace":
        x = np.linspace(draw["start"], draw["stop"], draw["num"])
    elif kind == "uniform":
        x = rng.uniform(draw["low"], draw["high"], draw["num"])
    else:
        x = rng.normal(draw.get("mean", 0.0), draw.get("stddev", 1.0), draw["num"])
    y = synthetic_truth(options, x).astype(np.float64)
    stddev = (options.get("noise") or {}).get("stddev", 0.0)
    if stddev:
        y = y + rng.normal(0.0, stddev, len(x))
    return array_source(x.astype(np.float32)[:, None], y.astype(np.float32)[:, None], [])
