"""The `data:` section: each split's source through its stages, as tf.data.Datasets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from runner.data.source import Source
from runner.data.sources import load_source
from runner.data.stages import apply_stages

SPLITS = ("train", "validation", "test")


@dataclass
class Datasets:
    """The built splits, their metadata and the data files they read."""

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    info: dict
    files: list[Path]
    epoch: tf.Variable | None = None  # the loops set it at each epoch's start: it seeds reshuffling


def build_datasets(spec) -> Datasets:
    """Every declared split: its source (files opened and checked now), then its stages.

    The caller seeds TensorFlow first (`keras.utils.set_random_seed`): shuffle stages
    without their own seed then shuffle the same way on every run.

    Raises:
        SpecError: a missing or corrupt file, or a source or stage that cannot be built,
            located at its key in the spec.
    """
    section = spec.doc["data"]
    seed = spec.doc.get("seed")
    sources: dict[str, Source] = {}
    for split in SPLITS:
        declared = section.get(split)
        if declared and "source" in declared:
            sources[split] = load_source(spec, ("data", split, "source"), declared["source"], seed)
    validation = section.get("validation")
    if validation and "fraction" in validation:
        sources["train"], sources["validation"] = _split_off(spec, sources["train"], validation["fraction"])

    info = _info(sources)
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    built = {}
    for split, source in sources.items():
        stages = section[split].get("stages") or []
        built[split] = apply_stages(spec, ("data", split, "stages"), source.make(), stages,
                                    count=source.count, info=info, epoch=epoch)
    files = list(dict.fromkeys(f for s in sources.values() for f in s.files))
    return Datasets(built["train"], built.get("validation"), built.get("test"), info, files, epoch)


def _split_off(spec, train: Source, fraction: float) -> tuple[Source, Source]:
    """(train without its last `fraction` of elements, those elements)."""
    held_out = round(train.count * fraction)
    if not 0 < held_out < train.count:
        raise spec.error(("data", "validation", "fraction"),
                         f"a fraction {fraction} of train's {train.count} elements leaves "
                         f"{'no validation' if held_out == 0 else 'no training'} elements", at_value=True)
    kept = train.count - held_out
    return train.select(0, kept), train.select(kept, train.count)


def _info(sources: dict[str, Source]) -> dict:
    """num_classes and class_names (train's, else the first split that knows), sizes by split."""
    ordered = [sources[s] for s in SPLITS if s in sources]
    num_classes = next((s.num_classes for s in ordered if s.num_classes is not None), None)
    class_names = next((s.class_names for s in ordered if s.class_names), None)
    return {
        "num_classes": num_classes,
        "class_names": class_names,
        "num_examples": {s: sources[s].count if s in sources else None for s in SPLITS},
    }
