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
