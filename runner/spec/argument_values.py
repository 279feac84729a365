"""The values a Keras argument can take, by the argument's name: sizes, rates, learning rates.

Keras checks many of these only when it builds the layer or the optimizer (`pipe plan`,
`pipe run`), and some never (a negative learning rate climbs the loss, a momentum past 1
makes a moving average diverge); `pipe validate` says them first. The rules go by Keras's
naming of arguments, not by a table of classes, so a layer that Keras adds with a `units`
or a `rate` is checked the same way. Each range is one Keras itself holds, or one outside
which the run fails or cannot learn; none rejects a value that trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _all_ints(value, smallest: int) -> bool:
    """An integer ≥ `smallest`, or a list (of lists) of them: Keras's tuple arguments."""
    if isinstance(value, list):
        return bool(value) and all(_all_ints(item, smallest) for item in value)
    return _is_int(value) and value >= smallest


@dataclass(frozen=True)
class Range:
    """What an argument takes, as a message says it, and the test of a value."""

    expected: str
    accepts: Callable[[object], bool]


COUNT = Range("a positive integer", lambda v: _is_int(v) and v > 0)
SIZES = Range("a positive integer or a list of them", lambda v: _all_ints(v, 1))
PADDING = Range("'valid', 'same', 'causal', or an integer ≥ 0 or a list of them",
                lambda v: isinstance(v, str) or _all_ints(v, 0))
CROPPING = Range("an integer ≥ 0 or a list of them", lambda v: _all_ints(v, 0))
RATE = Range("a number in [0, 1) (1 would drop every unit)", lambda v: _is_number(v) and 0 <= v < 1)
FRACTION = Range("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
DECAY = Range("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)
POSITIVE = Range("a number > 0", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Range("a number ≥ 0", lambda v: _is_number(v) and v >= 0)
NON_NEGATIVE_INT = Range("an integer ≥ 0", lambda v: _is_int(v) and v >= 0)
ACCUMULATION = Range("an integer ≥ 2 (or null: no accumulation)", lambda v: _is_int(v) and v >= 2)

_LAYERS, _OPTIMIZERS, _SCHEDULES = ("layers",), ("optimizers",), ("schedules",)
_ANY = ("layers", "optimizers", "schedules", "regularizers", "losses")

# argument name → (its range, the kinds of identifier whose argument of that name it is)
_RULES: dict[str, tuple[Range, tuple[str, ...]]] = {
    # counts of units, filters, heads, tokens, ...
    **{name: (COUNT, _LAYERS) for name in (
        "units", "filters", "num_heads", "key_dim", "value_dim", "output_dim", "input_dim", "num_tokens",
        "num_bins", "n", "groups", "depth_multiplier", "num_query_heads", "num_key_value_heads", "head_dim",
        "power_iterations")},
    **{name: (SIZES, _LAYERS) for name in ("kernel_size", "pool_size", "strides", "dilation_rate", "size",
                                           "output_size")},
    "padding": (PADDING, _LAYERS),
    "cropping": (CROPPING, _LAYERS),
    "output_padding": (CROPPING, _LAYERS),
    # the share of units a layer drops
    **{name: (RATE, _LAYERS) for name in ("rate", "dropout", "recurrent_dropout")},
    "stddev": (FRACTION, _LAYERS),  # GaussianNoise: Keras's own range
    # moving averages and the optimizers' decay factors
    **{name: (FRACTION, _LAYERS + _OPTIMIZERS) for name in ("momentum", "ema_momentum", "renorm_momentum")},
    **{name: (DECAY, _OPTIMIZERS) for name in ("beta_1", "beta_2", "rho", "adam_beta_1", "adam_beta_2")},
    "label_smoothing": (FRACTION, ("losses",)),
    # steps and sizes of the optimization
    "learning_rate": (POSITIVE, _OPTIMIZERS),
    "initial_learning_rate": (POSITIVE, _SCHEDULES),
    **{name: (COUNT, _SCHEDULES) for name in ("decay_steps", "first_decay_steps")},
    "warmup_steps": (NON_NEGATIVE_INT, _SCHEDULES + _OPTIMIZERS),
    "end_learning_rate": (NON_NEGATIVE, _SCHEDULES),
    **{name: (POSITIVE, _ANY) for name in ("epsilon", "clipnorm", "global_clipnorm", "clipvalue")},
    **{name: (NON_NEGATIVE, _ANY) for name in ("weight_decay", "l1", "l2")},
    **{name: (NON_NEGATIVE, _LAYERS) for name in ("negative_slope", "max_value", "threshold")},
    "gradient_accumulation_steps": (ACCUMULATION, _OPTIMIZERS),
}


def value_problem(kind: str, argument: str, value) -> str | None:
    """Why `value` cannot be Keras's `argument` of an identifier of `kind`, or None.

    None for arguments without a rule and for null (Keras's default).
    """
    rule = _RULES.get(argument)
    if rule is None or value is None or kind not in rule[1]:
        return None
    if isinstance(value, float) and value != value:
        return None  # .nan: said once, wherever it is, by the rule on numbers that are none
    allowed, _ = rule
    if allowed.accepts(value):
        return None
    return f"expected {allowed.expected}, got {_shown(value)}"


def _shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)
