"""What a loss says about the output it trains: binary or multiclass classification, or not.

Decided by the Keras loss an identifier resolves to, never by how the spec spells it: a
loss object by its class (`{BinaryCrossentropy: {from_logits: true}}`, the `class_name`
form, a loss renamed with `name:`), a loss function (`binary_crossentropy`, `bce`) by the
loss class that wraps that same function, and a loss `compile` wrapped likewise.
"""

from __future__ import annotations

import functools

import keras

from runner.models.build import declared_output_names
from runner.models.identifiers import get_loss

_BINARY = ("BinaryCrossentropy", "BinaryFocalCrossentropy")
_MULTICLASS = ("CategoricalCrossentropy", "SparseCategoricalCrossentropy", "CategoricalFocalCrossentropy",
               "CategoricalHinge")
_SPARSE = ("SparseCategoricalCrossentropy",)


@functools.cache
def _classes() -> dict:
    """{loss class name: (class, the function its instances wrap)} of the classification losses."""
    found = {}
    for name in _BINARY + _MULTICLASS:
        cls = getattr(keras.losses, name, None)
        if cls is not None:
            found[name] = (cls, getattr(cls(), "fn", None))
    return found


def loss_class(loss) -> str | None:
    """The name of the Keras classification loss class `loss` is (or wraps); None for others."""
    fn = getattr(loss, "fn", loss)
    for name, (cls, wrapped) in _classes().items():
        if type(loss) is cls:
            return name
    for name, (cls, wrapped) in _classes().items():
        if isinstance(loss, cls) or (wrapped is not None and fn is wrapped):
            return name
    return None


def loss_kind(loss) -> dict:
    """`{"kind": "multiclass"|"binary"|"regression", "from_logits": bool}` for a Keras loss."""
    name = loss_class(loss)
    if name is None:
        return {"kind": "regression", "from_logits": False}
    from_logits = getattr(loss, "from_logits", None)
    if from_logits is None:
        from_logits = (getattr(loss, "_fn_kwargs", None) or {}).get("from_logits", False)
    return {"kind": "binary" if name in _BINARY else "multiclass", "from_logits": bool(from_logits)}


def is_sparse(loss) -> bool:
    """Whether `loss` takes one integer class index per row (a sparse categorical loss)."""
    return loss_class(loss) in _SPARSE


_TRAIN_LOSS = object()  # output_kind's default: the spec's train.loss


def output_kind(spec, output=None, loss=_TRAIN_LOSS) -> dict:
    """How to read an output: `{"kind": "multiclass"|"binary"|"regression", "from_logits": bool}`.

    Decided by the Keras loss the run trained the output with (`loss_kind`),
    however the spec spells it: `train.loss` (the entry of `output` when it is per output),
    or `loss`, one output's own loss identifier, when given.
    """
    if loss is not _TRAIN_LOSS:
        return loss_kind(get_loss(loss, spec))
    config = spec.sections.train.loss
    per_output = isinstance(config, dict) and "class_name" not in config and (
        len(config) > 1 or set(config) <= set(declared_output_names(spec.sections.model.as_dict()) or [None]))
    if per_output and output in config:
        config = config[output]
    elif per_output and output is None and len(config) == 1:
        config = next(iter(config.values()))  # the one output's own loss
    elif per_output:
        return {"kind": "regression", "from_logits": False}  # an output without a loss of its own
    return loss_kind(get_loss(config, spec))
