"""A run's TensorBoard HParams summary: what it was run with, and the final metrics it reached.

With `outputs.tensorboard` the run's `tensorboard/` folder is one HParams session: as the
run starts, its hyperparameters (a sweep's trial: the swept values, named by their `--set` keys; another
run: every value of its spec, flattened to dotted keys); as it completes, its final metrics as scalars
named `<split>.<metric>` (`test.accuracy`), the names a sweep's objective uses. Pointed at a
sweep directory (or any folder of runs), TensorBoard's HParams dashboard then lists every
run with its values and metrics, without a config of the experiment: it gathers the
hyperparameters and metrics from the sessions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FOLDER = "tensorboard"


def dotted_values(value, prefix: str = "") -> dict:
    """A document as `{dotted.key: value}`: mappings by key, lists of mappings or lists by
    index; an empty mapping and a list of plain values are values themselves."""
    if isinstance(value, dict) and value:
        pairs = value.items()
    elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        pairs = enumerate(value)
    else:
        return {prefix: value}
    out = {}
    for key, item in pairs:
        out.update(dotted_values(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def spec_hparams(doc: dict) -> dict:
    """Every value of a spec as `{dotted.key: value}` (lists by index), the sweep section left out."""
    flat = dotted_values({k: v for k, v in doc.items() if k != "sweep"})
    return {key: value for key, value in flat.items() if value != {}}


def write_hparams(run_dir, hparams: dict, session: str) -> None:
    """The run's HParams session in `<run_dir>/tensorboard/`, as the run starts (a pruned or
    failed run is listed too, with the epochs it logged).

    Args:
        hparams: `{name: value}`; a value HParams cannot hold (a list, None) is kept as its JSON text.
        session: the session's name in the dashboard (the run's name and directory).
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(str(Path(run_dir) / FOLDER))
    with writer.as_default():
        hp.hparams({name: _hparam_value(value) for name, value in hparams.items()}, trial_id=session)
    writer.close()


def write_final_metrics(run_dir, metrics: dict, step: int) -> None:
    """The final metrics by split (`{"test": {"loss": 0.3}}`) as scalars `<split>.<metric>` at
    `step` (the epochs trained), beside the HParams session."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(Path(run_dir) / FOLDER))
    with writer.as_default():
        for split, values in metrics.items():
            for name, value in (values or {}).items() if isinstance(values, dict) else ():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    tf.summary.scalar(f"{split}.{name}", float(value), step=step)
    writer.close()


def _hparam_value(value):
    """A value as HParams holds it: a bool, a number or a string (other values as JSON text)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)
