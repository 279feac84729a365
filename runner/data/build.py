"""The `data:` section: each split's source through its stages, as tf.data.Datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tensorflow as tf

from runner.data.learned import Learned
from runner.data.cache import source_key
from runner.data.class_values import class_values
from runner.data.emptiness import check_not_empty
from runner.data.source import Source
from runner.data.sources import load_source
from runner.data.split import split_fraction
from runner.data.stages import apply_stages, evaluated_stages, inherited_stages
from runner.data.table import encode_tables
from runner.spec.sections import section

SPLITS = ("train", "validation", "test")


@dataclass
class Datasets:
    """The built splits, their metadata and the data files they read."""

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None
    info: dict
    files: list[Path]
    learned: Learned | None = None  # statistics learned from train (saved as preprocessing.json)
    sources: dict = field(default_factory=dict)  # split -> Source, for the in-memory engine
    epoch: tf.Variable | None = None  # the loops set it at each epoch's start: it seeds reshuffling
    # What an engine derives from these splits alone (in-memory plans and tensors), kept with
    # them: a sweep's worker that reuses the datasets for its next trial reuses these too.
    kept: dict = field(default_factory=dict, repr=False)

    def keep(self, key, make):
        """`make()`, computed once for these datasets under `key`."""
        if key not in self.kept:
            self.kept[key] = make()
        return self.kept[key]

    def validated_split(self, train) -> str | None:
        """The split the epochs validate on, by name: `train.validate_on`, by default the
        validation split when there is one.

        Args:
            train: the `TrainConfig` (a Spec is taken too, for its train section).
        """
        which = section(train, "train").validate_on
        if which == "test":
            return "test"
        if which in ("validation", None) and self.validation is not None:
            return "validation"
        return None


def build_datasets(spec, learned: Learned | None = None, splits=SPLITS) -> Datasets:
    """Every declared split: its source (files opened and checked now), then its stages.

    The caller seeds TensorFlow first (`keras.utils.set_random_seed`): shuffle stages
    without their own seed then shuffle the same way on every run.

    Args:
        learned: statistics saved by an earlier run (`runner.data.learned.load_learned`):
            applied as they are instead of being learned from train again. Train is then read
            as evaluation reads it: without augmentation, shuffle or repeat.
        splits: the splits to build (with `learned`, e.g. `("test",)` alone).

    Raises:
        SpecError: a missing or corrupt file, or a source or stage that cannot be built,
            located at its key in the spec.
    """
    data, seed = spec.sections.data, spec.sections.seed
    sources: dict[str, Source] = {}
    fractions = [s for s in ("test", "validation") if data.split(s).declares("fraction")]
    for split in SPLITS:
        declared = data.split(split)
        wanted = split in splits or (split == "train" and any(s in splits for s in fractions))
        if declared.declares("source") and wanted:
            sources[split] = load_source(spec, declared.path + ("source",), declared.source, seed)
    whole = sources["train"].count if "train" in sources else None
    for held in fractions if whole is not None else ():  # test first: train, validation, test in time order
        sources["train"], sources[held] = split_fraction(data.split(held), sources["train"], seed, whole)
    evaluating = learned is not None  # an earlier run's model on its data: train is read as evaluation reads it
    learned = learned if learned is not None else Learned()
    learned.restart()
    sources = encode_tables(spec, sources, learned)

    info = _info(sources)
    info.update(class_values(spec, sources.get("train"), info["num_classes"]))  # when the spec asks
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")
    built = {}
    order = ["train"] + [s for s in sources if s != "train"]  # train first: it learns the statistics
    for split in (s for s in order if s in sources and s in splits):
        source = sources[split]
        path, stages, positions = ("data", split, "stages"), list(data.split(split).stages), None
        if data.split(split).inherits_train_stages:
            # A fraction of train gets train's deterministic preprocessing unless it declares its own.
            path = ("data", "train", "stages")
            positions, stages = inherited_stages(list(data.train.stages))
        elif split == "train" and evaluating:
            positions, stages = evaluated_stages(stages)
        built[split] = apply_stages(spec, path, source.make(), stages, count=source.count, info=info,
                                    learned=learned, split=split, positions=positions,
                                    source_key=source_key(spec, split, source), epoch=epoch)
        check_not_empty(data.split(split), built[split])
    files = list(dict.fromkeys(f for s in sources.values() for f in s.files))
    return Datasets(built.get("train"), built.get("validation"), built.get("test"), info, files,
                    learned=learned, sources=sources, epoch=epoch)


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
