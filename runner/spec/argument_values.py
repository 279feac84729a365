"""The values a Keras argument can take, by the argument's name: sizes, rates, learning rates.

Keras checks many of these only when it builds the layer or the optimizer (`pipe plan`,
`pipe run`), and some never (a negative learning rate climbs the loss, a momentum past 1
makes a moving average diverge); `pipe validate` says them first. The rules go by Keras's
naming of arguments, not by a table of classes, so a layer that Keras adds with a `units`
or a `rate` is checked the same way. Each range is one Keras itself holds, or one outside
which the run fails or cannot learn; none rejects a value that trains.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _all_ints(value, smallest: int) -> bool:
    """An integer ≥ `smallest`, or a list (of lists) of them: Keras's tuple arguments."""
    if isinstance(value, list):
        return bool(value) and all(_all_ints(item, smallest) for item in value)
    return is_int(value) and value >= smallest


@dataclass(frozen=True)
class Range:
    """What an argument takes, as a message says it, and the test of a value."""

    expected: str
    accepts: Callable[[object], bool]


COUNT = Range("a positive integer", lambda v: is_int(v) and v > 0)
SIZES = Range("a positive integer or a list of them", lambda v: _all_ints(v, 1))
# padding's words, and how many integers a layer takes, are its own (runner.spec.layer_geometry)
PADDING = Range("an integer ≥ 0 or a list of them", lambda v: isinstance(v, str) or _all_ints(v, 0))
CROPPING = Range("an integer ≥ 0 or a list of them", lambda v: _all_ints(v, 0))
FRACTION = Range("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1)
POSITIVE = Range("a number > 0", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE = Range("a number ≥ 0", lambda v: _is_number(v) and v >= 0)
NON_POSITIVE = Range("a number ≤ 0", lambda v: _is_number(v) and v <= 0)
NON_NEGATIVE_INT = Range("an integer ≥ 0", lambda v: is_int(v) and v >= 0)
ACCUMULATION = Range("an integer ≥ 2 (or null: no accumulation)", lambda v: is_int(v) and v >= 2)

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
    **{name: (FRACTION, _LAYERS) for name in ("rate", "dropout", "recurrent_dropout")},
    "stddev": (FRACTION, _LAYERS),  # GaussianNoise: Keras's own range
    # moving averages and the optimizers' decay factors
    **{name: (FRACTION, _LAYERS + _OPTIMIZERS) for name in ("momentum", "ema_momentum", "renorm_momentum")},
    **{name: (FRACTION, _OPTIMIZERS) for name in ("beta_1", "beta_2", "rho", "adam_beta_1", "adam_beta_2")},
    "label_smoothing": (FRACTION, ("losses",)),
    # steps and sizes of the optimization
    # 0 is Keras's own start of a warmup (CosineDecay's initial_learning_rate with warmup_target)
    "learning_rate": (NON_NEGATIVE, _OPTIMIZERS),
    "initial_learning_rate": (NON_NEGATIVE, _SCHEDULES),
    **{name: (COUNT, _SCHEDULES) for name in ("decay_steps", "first_decay_steps")},
    "warmup_steps": (NON_NEGATIVE_INT, _SCHEDULES + _OPTIMIZERS),
    "end_learning_rate": (NON_NEGATIVE, _SCHEDULES),
    **{name: (POSITIVE, _ANY) for name in ("clipnorm", "global_clipnorm", "clipvalue")},
    "epsilon": (NON_NEGATIVE, _ANY),
    **{name: (NON_NEGATIVE, _ANY) for name in ("weight_decay", "l1", "l2")},
    **{name: (NON_NEGATIVE, _LAYERS) for name in ("negative_slope", "max_value", "threshold")},
    "gradient_accumulation_steps": (ACCUMULATION, _OPTIMIZERS),
    # Ftrl's (Keras refuses the other sign); a negative accumulator start is a square root of < 0 in Adagrad
    "learning_rate_power": (NON_POSITIVE, _OPTIMIZERS),
    **{name: (NON_NEGATIVE, _OPTIMIZERS) for name in (
        "l1_regularization_strength", "l2_regularization_strength", "l2_shrinkage_regularization_strength",
        "initial_accumulator_value")},
}


def _factor(low: float, high: float, low_open: bool = False) -> Range:
    """A random layer's factor as Keras checks it: a number in the range (a list of two is
    Keras's own lower and upper bound, which it does not hold to the range)."""
    shown_range = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    return Range(f"a number in {shown_range} or a list of two numbers",
                 lambda v: isinstance(v, list) or _is_number(v) and (low < v if low_open else low <= v) and v <= high)


# A decay factor of 1 that a bias correction divides by (1 - β^t = 0): the first update is NaN,
# whatever the data. Elsewhere 1 runs (Adam's beta_2, RMSprop's rho, Lion's beta_1, ...).
BIAS_CORRECTED = Range("a number in [0, 1) (at 1 the bias correction divides by 0: the first update is NaN)",
                       lambda v: _is_number(v) and 0 <= v < 1)
_BIAS_CORRECTED = (("Adam", "beta_1"), ("AdamW", "beta_1"), ("Adamax", "beta_1"), ("Lamb", "beta_1"),
                   ("Lamb", "beta_2"), ("Muon", "adam_beta_1"), ("Nadam", "beta_2"), ("ScheduleFreeAdamW", "beta_2"))

# (class, argument) → its range, where Keras holds one class's argument to a range of its own
_CLASS_RULES: dict[tuple[str, str], Range] = {
    **{rule: BIAS_CORRECTED for rule in _BIAS_CORRECTED},
    ("Lion", "beta_1"): Range("a number in (0, 1] (at 0 Lion is sign descent, which Keras refuses)",
                              lambda v: _is_number(v) and 0 < v <= 1),
    ("RandomContrast", "factor"): _factor(0, 1),
    ("RandomRotation", "factor"): _factor(-1, 1),
    ("RandomBrightness", "factor"): _factor(-1, 1),
    ("RandomTranslation", "height_factor"): _factor(-1, 1),
    ("RandomTranslation", "width_factor"): _factor(-1, 1),
    ("RandomZoom", "height_factor"): _factor(-1, 1, low_open=True),
    ("RandomZoom", "width_factor"): _factor(-1, 1, low_open=True),
    ("ReduceLROnPlateau", "factor"): Range("a number < 1 (the rate is multiplied by it)",
                                           lambda v: _is_number(v) and v < 1),
}


def value_problem(kind: str, argument: str, value, owner: str = "") -> str | None:
    """Why `value` cannot be Keras's `argument` of the identifier `owner` of `kind`, or None.

    None for arguments without a rule and for null (Keras's default).
    """
    rule = (_CLASS_RULES[owner, argument], (kind,)) if (owner, argument) in _CLASS_RULES else _RULES.get(argument)
    if rule is None or value is None or kind not in rule[1]:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # .nan and .inf: said once, wherever they are, by the rule on numbers (runner.spec.schema)
    allowed, _ = rule
    if allowed.accepts(value):
        return None
    return f"expected {allowed.expected}, got {shown(value)}"


def shown(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)
