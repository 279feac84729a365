"""One order for a run's logged values, whichever engine trained it: the spec's.

Keras `fit` hands its logs over sorted by name (its structures are flattened as `tf.nest`
sorts a dict), the custom loop and the fused engine in the order they track them; so the
columns of history.csv and the keys of metrics.json would follow the engine. Every table
and result is written in one order instead: the loss, each output's loss, the metrics as
`train.metrics` lists them, then anything else logged (a callback's `learning_rate`) as it
came; then the `val_` values in the same order.
"""

from __future__ import annotations


def logged_names(metrics, loss=None) -> list[str]:
    """The names the logs give the loss and the spec's metrics, in the spec's order.

    `metrics`: as the build resolved them (a list, or a list per output name); `loss`: its
    per-output form has `resolved`, one loss per output.
    """
    names = ["loss"]
    resolved = getattr(loss, "resolved", None)
    if isinstance(resolved, dict):
        names += [f"{output}_loss" for output in resolved]
    if isinstance(metrics, dict):
        names += [f"{output}_{_name(metric)}" for output, listed in metrics.items() for metric in listed or []]
    else:
        names += [_name(metric) for metric in metrics or []]
    return names


def in_order(logs: dict, names: list[str]) -> dict:
    """`logs` with its keys in the order of `names` (others after them, as they came), the
    `val_` keys after the others, in the same order."""
    rank = {name: i for i, name in enumerate(names)}

    def key(item):
        position, name = item
        validation = name.startswith("val_")
        return validation, rank.get(name[4:] if validation else name, len(rank)), position

    return {name: logs[name] for _, name in sorted(enumerate(logs), key=key)}


def _name(metric) -> str:
    return metric if isinstance(metric, str) else str(getattr(metric, "name", metric))
