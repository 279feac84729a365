"""`train.class_weight` checked against the data's classes before training."""

from __future__ import annotations

from runner.spec.errors import SpecErrors
from runner.spec.sections import TrainConfig, section


def check_class_weight(train, info: dict) -> None:
    """Every class gets a weight, and every weighted class is a class of the data.

    Keras looks each label up in a table of the weights: a label with no weight fails
    mid-training, and a weight for a class the data does not have is silently unused.

    Args:
        train: the `TrainConfig` (the Spec is taken too).

    Raises:
        SpecError: located at train.class_weight (SpecErrors: one for each class the data
            does not have).
    """
    train = section(train, "train")
    weights = train.class_weight
    if not weights or weights == "balanced":
        return  # balanced: one weight per class of train (runner.data.class_values)
    num_classes = info.get("num_classes")
    path = ("class_weight",)
    if num_classes is None:
        raise train.error(path, "class_weight needs integer class labels, and the train labels are not")
    classes = range(num_classes)
    outside = [k for k in weights if not (str(k).lstrip("-").isdigit() and int(k) in classes)]
    errors = [train.error((*path, k), f"class {k} does not exist: the data has {num_classes} classes "
                                      f"(0..{num_classes - 1})") for k in outside]
    missing = [c for c in classes if c not in {int(k) for k in weights if str(k).lstrip("-").isdigit()}]
    if missing and not outside:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        errors.append(train.error(path, f"class_weight has no weight for class {shown}: give one for each of "
                                        f"0..{num_classes - 1}"))
    if len(errors) > 1:
        raise SpecErrors(errors)
    if errors:
        raise errors[0]


def class_weights(train, info: dict) -> dict | None:
    """The weight of each class for Keras: the spec's table, or the one `balanced` computed
    from the train split (`info["class_weight"]`); None without class weights.

    `train` is the `TrainConfig` (or the `train:` mapping as the spec writes it).
    """
    declared = train.class_weight if isinstance(train, TrainConfig) else train.get("class_weight")
    weights = info.get("class_weight") or declared
    return {int(k): float(v) for k, v in weights.items()} if weights else None
