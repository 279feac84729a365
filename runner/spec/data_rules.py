"""Rules of the data section that the schema cannot say: no split that never ends, and
augmentation on train only."""

from __future__ import annotations

from runner.spec.errors import SpecError


def endless_errors(spec) -> list[SpecError]:
    """A `repeat` without a count makes a split endless: an epoch (or an evaluation) would
    never finish unless `train.steps_per_epoch` bounds it or a later `take` does."""
    errors = []
    bounded_by_steps = spec.get("train", "steps_per_epoch") is not None
    for split in ("train", "validation", "test"):
        stages = spec.get("data", split, "stages", default=[])
        endless_at = None
        for i, stage in enumerate(stages if isinstance(stages, list) else []):
            if not isinstance(stage, dict) or len(stage) != 1:
                continue  # the schema reports it
            ((name, args),) = stage.items()
            if name == "repeat" and (args if isinstance(args, dict) else {}).get("count") is None:
                endless_at = i
            elif name == "take":
                endless_at = None
        if endless_at is None or (split == "train" and bounded_by_steps):
            continue
        fix = ("give repeat a count, or set train.steps_per_epoch" if split == "train"
               else "give repeat a count or follow it with take (evaluation reads the split to its end)")
        errors.append(spec.error(("data", split, "stages", endless_at, "repeat"),
                                 f"repeat without a count makes the {split} split endless and the run would hang: {fix}"))
    return errors


_ORDER_BREAKING = ("shuffle", "batch", "unbatch", "repeat")  # a window after these mixes steps


def window_errors(spec) -> list[SpecError]:
    """A `window` takes one time step per element in time order: not after shuffle or batch,
    and a fraction held out of a windowed train is the series' end (shuffle: false)."""
    errors, windowed = [], False
    for split in ("train", "validation", "test"):
        stages = spec.get("data", split, "stages", default=[])
        before = None
        for i, stage in enumerate(stages if isinstance(stages, list) else []):
            if not isinstance(stage, dict) or len(stage) != 1:
                continue
            ((name, args),) = stage.items()
            if name in _ORDER_BREAKING and before is None:
                before = name
            if name != "window" or not isinstance(args, dict):
                continue
            windowed |= split == "train"
            where = ("data", split, "stages", i, "window")
            if before is not None:
                errors.append(spec.error(where, f"window takes the time steps in order, one per element, but "
                                                f"{before} comes before it: put window before {before}"))
            if args.get("targets") == "next" and args.get("horizon") == 0:
                errors.append(spec.error(where + ("horizon",), "targets: next needs a horizon of at least 1 "
                                                               "step (0 is the window's own last step)", at_value=True))
    for held in ("validation", "test") if windowed else ():
        declared = spec.get("data", held, default=None)
        if not isinstance(declared, dict) or "fraction" not in declared or declared.get("stages") is not None:
            continue
        if declared.get("stratify") is True:
            errors.append(spec.error(("data", held, "stratify"), f"train's stages make windows of a series: a {held} "
                                     "fraction is the series' last steps, in order, not a stratified sample"))
        elif declared.get("shuffle", True) is not False:
            errors.append(spec.error(("data", held, "fraction"), f"train's stages make windows of a series: hold "
                                     f"out the series' last steps in order, so that no window crosses into "
                                     f"{held} (set data.{held}.shuffle: false)"))
    return errors


PRIOR_ACTIVATIONS = (None, "linear", "sigmoid", "softmax")  # a prior bias is a logit's: before or in these


def prior_paths(tree, path=("model",)):
    """Every path where a model section writes `bias_initializer: prior`, in order."""
    if isinstance(tree, dict):
        if tree.get("bias_initializer") == "prior":
            yield path + ("bias_initializer",)
        for key, value in tree.items():
            yield from prior_paths(value, path + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from prior_paths(value, path + (i,))


def prior_errors(spec) -> list[SpecError]:
    """`bias_initializer: prior` belongs to an output Dense layer: the last layer of a
    sequential model, or a functional layer named in `outputs`."""
    model = spec.get("model", default={})
    functional = model.get("functional") if isinstance(model, dict) else None
    outputs = functional.get("outputs") if isinstance(functional, dict) else None
    outputs = [outputs] if isinstance(outputs, str) else outputs if isinstance(outputs, list) else []
    errors = []
    for path in prior_paths(model):
        layer = path[:-2]  # the layer's item: {Dense: {...}} or {class_name: Dense, config: {...}}
        name = path[-2] if path[-2] != "config" else spec.get(*layer, "class_name")
        items = spec.get(*layer[:-1]) if layer[-1] == "layer" else None
        is_output = (layer[:3] == ("model", "sequential", "layers") and len(layer) == 4
                     and layer[3] == len(spec.get("model", "sequential", "layers")) - 1) or (
            layer[:3] == ("model", "functional", "layers") and len(layer) == 5 and isinstance(items, dict)
            and items.get("name") in outputs)
        if name != "Dense" or not is_output:
            errors.append(spec.error(path, "prior sets an output layer's bias from the train split's class "
                                           "frequencies: it goes on the bias_initializer of the model's output "
                                           "Dense layer (the last of a sequential model, or a functional output)",
                                     at_value=True))
            continue
        activation = (spec.get(*path[:-1]) or {}).get("activation")
        if activation not in PRIOR_ACTIVATIONS:
            errors.append(spec.error(path[:-1] + ("activation",), f"bias_initializer: prior fits an output layer "
                                     f"whose activation is sigmoid, softmax, linear or none (logits), not "
                                     f"{activation!r}",
                                     at_value=True))
    return errors


def augment_errors(spec) -> list[SpecError]:
    """`augment` draws new random values on every pass: train only. A validation or test
    split that augments would be measured on other data than it holds, differently each time."""
    errors = []
    for split in ("validation", "test"):
        stages = spec.get("data", split, "stages", default=[])
        for i, stage in enumerate(stages if isinstance(stages, list) else []):
            if not isinstance(stage, dict) or len(stage) != 1 or "map" not in stage:
                continue
            ops = (stage["map"] or {}).get("ops") if isinstance(stage["map"], dict) else None
            for j, op in enumerate(ops if isinstance(ops, list) else []):
                if isinstance(op, dict) and "augment" in op:
                    errors.append(spec.error(("data", split, "stages", i, "map", "ops", j, "augment"),
                                             f"augment applies to train only: the {split} split is evaluated on "
                                             "its data as it is (remove the op)"))
    return errors
