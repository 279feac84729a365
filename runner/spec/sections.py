"""Typed views of a validated spec's sections: train, outputs, device, data splits, model.

Built once per spec (`spec.sections`), frozen, with every default written here and equal
to the schema's `default` keywords (a test compares them). Each section keeps its path in
the spec, so `section.error("epochs", ...)` is located as `spec.yaml:12:5: train.epochs: ...`.
Identifiers (loss, optimizer, metrics, callbacks, layers, sources, stages) stay as the spec
writes them: Keras and the data sources resolve them.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from typing import ClassVar

from runner.spec.errors import SpecError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, kw_only=True)
class Section:
    """A part of the spec at `path`, able to locate an error at one of its keys."""

    _spec: object = field(default=None, repr=False, compare=False)
    _raw: object = field(default=None, repr=False, compare=False)  # the value as the spec writes it
    path: tuple = field(default=(), compare=False)
    declared: tuple = field(default=(), compare=False)  # the keys the spec writes, in its order

    SCHEMA: ClassVar[tuple] = ()  # where its properties are in the schema, for the defaults test
    TUPLES: ClassVar[tuple] = ()  # fields whose lists become tuples

    @classmethod
    def of(cls, value, spec=None, path: tuple = ()):
        """The section from its value in the spec (None or absent: every default).

        A key the spec leaves out, or writes as null, takes the default written here.
        """
        value = value if isinstance(value, dict) else {}
        nested = cls._nested()
        given = {}
        for f in fields(cls):
            if f.name in nested:
                given[f.name] = nested[f.name](value.get(f.name), spec, (*path, f.name))
            elif f.init and f.name not in _BASE and value.get(f.name) is not None:
                given[f.name] = copy.deepcopy(value[f.name])
                if f.name in cls.TUPLES:
                    given[f.name] = tuple(given[f.name])
        return cls(_spec=spec, _raw=copy.deepcopy(value), path=tuple(path), declared=tuple(value),
                   **{k: v for k, v in given.items() if v is not None})

    @classmethod
    def _nested(cls) -> dict:
        """Field name -> what reads its value into a section: (value, spec, path) -> section."""
        return {}

    def declares(self, key: str) -> bool:
        """Whether the spec writes `key` in this section (rather than leaving its default)."""
        return key in self.declared

    def as_dict(self) -> dict:
        """A copy of the section as the spec writes it ({} when absent), for readers of the raw form."""
        return copy.deepcopy(self._raw) if self._raw is not None else {}

    def error(self, key=None, message: str = "", hint: str | None = None, *, at_value: bool = False) -> SpecError:
        """A SpecError at `key` of this section (a name, an index or a tuple of them; None: the section)."""
        where = () if key is None else tuple(key) if isinstance(key, (tuple, list)) else (key,)
        if self._spec is None:
            return SpecError(message, path=(*self.path, *where), hint=hint)
        return self._spec.error((*self.path, *where), message, hint, at_value=at_value)


_BASE = {"_spec", "_raw", "path", "declared"}


@dataclass(frozen=True, kw_only=True)
class ReportConfig(Section):
    """`train.report`: the custom loop's report lines (format templates, never code)."""

    initial: str | None = None
    epoch: str | None = None

    SCHEMA: ClassVar[tuple] = ("properties", "train", "properties", "report")

    def __bool__(self) -> bool:
        return self.initial is not None or self.epoch is not None

    def as_dict(self) -> dict | None:
        """As the spec writes it, or None when absent (what the custom loop takes)."""
        return {k: v for k, v in (("initial", self.initial), ("epoch", self.epoch)) if v is not None} if self else None


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Section):
    """`train`: how to train."""

    loop: str = "fit"
    engine: str = "keras"
    fused_memory_mb: int = 1024
    epochs: int | None = None  # None with phases: see `total_epochs`
    loss: object = None
    optimizer: object = None
    metrics: object = None
    callbacks: object = None
    class_weight: object = None  # {class: weight}, "balanced" or None
    validate_on: str | None = None  # None: validation when declared
    steps_per_epoch: int | None = None  # None: one pass over train
    steps_per_execution: object = 1
    deterministic: bool = False
    verbose: object = "auto"
    report: ReportConfig = field(default_factory=ReportConfig)
    loss_weights: object = None
    initial_epoch: int = 0
    validation_freq: int = 1
    phases: tuple = ()  # each phase as the spec writes it

    TUPLES: ClassVar[tuple] = ("phases",)

    SCHEMA: ClassVar[tuple] = ("properties", "train")

    @classmethod
    def _nested(cls) -> dict:
        return {"report": ReportConfig.of}

    @property
    def total_epochs(self) -> int:
        """The run's epochs: `epochs`, or the sum of its phases' epochs."""
        if self.phases:
            return sum(int(p["epochs"]) for p in self.phases)
        return int(self.epochs)


@dataclass(frozen=True, kw_only=True)
class CheckpointsConfig(Section):
    """`outputs.checkpoints`: true, false or {enabled, every_seconds, every_epoch}."""

    enabled: bool = True
    every_seconds: float = 30
    every_epoch: bool = False

    SCHEMA: ClassVar[tuple] = ("properties", "outputs", "properties", "checkpoints")

    @classmethod
    def of(cls, value, spec=None, path: tuple = ()):
        if isinstance(value, bool):  # true: every default; false: none saved
            return cls(_spec=spec, _raw=value, path=tuple(path), enabled=value)
        return super().of(value, spec, path)

    @property
    def interval(self) -> float:
        """Seconds between two saves: 0 saves every epoch."""
        return 0.0 if self.every_epoch else float(self.every_seconds)

    @property
    def saves_every_epoch(self) -> bool:
        return self.enabled and self.interval == 0


@dataclass(frozen=True, kw_only=True)
class PlotsConfig(Section):
    """`outputs.plots`: which plots a finished run draws."""

    enabled: bool = True
    truth: dict | None = None  # true values of scalar variables, for the trajectory plot
    confusion_matrix: bool = True

    SCHEMA: ClassVar[tuple] = ("properties", "outputs", "properties", "plots")


@dataclass(frozen=True, kw_only=True)
class MlflowConfig(Section):
    """`outputs.mlflow`: where the run is tracked (each None: MLflow's or pipe's default)."""

    tracking_uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    register_as: str | None = None

    SCHEMA: ClassVar[tuple] = ("properties", "outputs", "properties", "mlflow")


def _mlflow(value, spec, path):
    return MlflowConfig.of(value, spec, path) if isinstance(value, dict) else None


@dataclass(frozen=True, kw_only=True)
class OutputsConfig(Section):
    """`outputs`: where the run directory goes and what it holds."""

    dir: str = "runs"
    save_model: object = True  # True, False, "keras" or "saved_model"
    tensorboard: bool = False
    export: tuple = ()
    checkpoints: CheckpointsConfig = field(default_factory=CheckpointsConfig)
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    mlflow: MlflowConfig | None = None  # None: the run is not tracked

    SCHEMA: ClassVar[tuple] = ("properties", "outputs")

    @classmethod
    def _nested(cls) -> dict:
        return {"checkpoints": CheckpointsConfig.of, "plots": PlotsConfig.of, "mlflow": _mlflow}

    TUPLES: ClassVar[tuple] = ("export",)


@dataclass(frozen=True, kw_only=True)
class DeviceConfig(Section):
    """`device`: placement, precision and distribution."""

    placement: str = "auto"
    visible_devices: tuple | None = None
    memory_growth: bool | None = None  # None: grow on demand, unless a memory limit is set
    memory_limit_mb: int | None = None
    cpu_devices: int | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    mixed_precision: str | None = None
    jit_compile: bool = False
    strategy: object = "default"  # a name, or {name, ...options} as the spec writes it

    SCHEMA: ClassVar[tuple] = ("properties", "device")

    TUPLES: ClassVar[tuple] = ("visible_devices",)

    @property
    def strategy_name(self) -> str:
        return self.strategy.get("name", "default") if isinstance(self.strategy, dict) else self.strategy

    @property
    def strategy_options(self) -> dict:
        """The strategy's options besides its name ({} for a name alone)."""
        return {k: v for k, v in self.strategy.items() if k != "name"} if isinstance(self.strategy, dict) else {}


@dataclass(frozen=True, kw_only=True)
class SplitConfig(Section):
    """One split of `data`: its source (or a fraction of train's) and its stages."""

    name: str = "train"
    source: object = None  # as the spec writes it: {csv: {...}}, {tfds: {...}}, ...
    fraction: float | None = None
    stages: tuple = ()
    shuffle: bool = True  # with fraction: shuffle before holding out
    stratify: bool = False

    SCHEMA: ClassVar[tuple] = ("$defs", "validation_split")

    TUPLES: ClassVar[tuple] = ("stages",)

    @classmethod
    def of(cls, value, spec=None, path: tuple = ("data", "train")):
        return dataclasses.replace(super().of(value, spec, path), name=path[-1])

    def __bool__(self) -> bool:
        """Whether the spec declares the split."""
        return bool(self.declared)

    @property
    def inherits_train_stages(self) -> bool:
        """A fraction of train without stages of its own: built with train's deterministic ones."""
        return self.name in ("validation", "test") and self.declares("fraction") and not self.declares("stages")


@dataclass(frozen=True, kw_only=True)
class DataConfig(Section):
    """`data`: the train split, and validation and test when declared (else empty, falsy)."""

    train: SplitConfig = field(default_factory=SplitConfig)
    validation: SplitConfig = field(default_factory=lambda: SplitConfig(name="validation"))
    test: SplitConfig = field(default_factory=lambda: SplitConfig(name="test"))

    SCHEMA: ClassVar[tuple] = ("properties", "data")

    @classmethod
    def _nested(cls) -> dict:
        return {name: SplitConfig.of for name in SPLITS}

    def split(self, name: str) -> SplitConfig:
        """The split called `name` (train, validation or test)."""
        return getattr(self, name)

    @property
    def splits(self) -> dict:
        """The declared splits by name, in the spec's order."""
        return {name: self.split(name) for name in self.declared if name in SPLITS}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Section):
    """`model`: one of sequential, functional or module, and an optional warm start."""

    sequential: dict | None = None
    functional: dict | None = None
    module: dict | None = None
    init_from: object = None  # a run directory, or {run, layers}

    SCHEMA: ClassVar[tuple] = ("properties", "model")

    @property
    def kind(self) -> str | None:
        return next((k for k in ("sequential", "functional", "module") if k in self.declared), None)



@dataclass(frozen=True)
class Sections:
    """Every typed section of one spec, with its name and seed."""

    name: str
    seed: int | None
    train: TrainConfig
    outputs: OutputsConfig
    device: DeviceConfig
    data: DataConfig
    model: ModelConfig

    @classmethod
    def of(cls, spec) -> "Sections":
        """The sections of a validated spec (use `spec.sections`: built once)."""
        doc = spec.doc
        return cls(
            name=doc.get("name"),
            seed=doc.get("seed"),
            train=TrainConfig.of(doc.get("train"), spec, ("train",)),
            outputs=OutputsConfig.of(doc.get("outputs"), spec, ("outputs",)),
            device=DeviceConfig.of(doc.get("device"), spec, ("device",)),
            data=DataConfig.of(doc.get("data"), spec, ("data",)),
            model=ModelConfig.of(doc.get("model"), spec, ("model",)),
        )


def section(given, name: str):
    """`given` when it is a section, else the section `name` of the Spec `given`.

    For functions that take their section and are still called with the whole spec.
    """
    sections = getattr(given, "sections", None)
    return getattr(sections, name) if isinstance(sections, Sections) else given


__all__ = ["CheckpointsConfig", "DataConfig", "DeviceConfig", "MlflowConfig", "ModelConfig", "OutputsConfig",
           "PlotsConfig", "ReportConfig", "Section", "Sections", "SplitConfig", "TrainConfig", "section"]
