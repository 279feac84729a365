"""Typed sections: defaults equal to the schema's, values read from a spec, located errors, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from runner.spec import load_schema, load_spec
from runner.spec import sections as S
from tests.spec.test_spec import MINIMAL

SECTION_CLASSES = [S.TrainConfig, S.ReportConfig, S.OutputsConfig, S.CheckpointsConfig, S.PlotsConfig,
                   S.MlflowConfig, S.DeviceConfig, S.SplitConfig, S.DataConfig, S.ModelConfig]
BASE_FIELDS = {"_spec", "_raw", "path", "declared"}


def _schema_node(path):
    node = load_schema()
    for key in path:
        node = node[key]
    return node


def _field_default(f):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def _as_field_value(cls_field, value):
    """A schema default as the section holds it: a nested section read from it, a list as a tuple."""
    default = _field_default(cls_field)
    if isinstance(default, S.Section):
        return type(default).of(value)
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("cls", SECTION_CLASSES, ids=lambda c: c.__name__)
def test_every_default_equals_the_schemas(cls):
    properties = _schema_node(cls.SCHEMA)["properties"]
    own = [f for f in dataclasses.fields(cls) if f.name not in BASE_FIELDS and f.name in properties]
    assert own, f"{cls.__name__} maps no schema property"
    for f in own:
        default = _field_default(f)
        if "default" in properties[f.name]:
            assert default == _as_field_value(f, properties[f.name]["default"]), f"{cls.__name__}.{f.name}"
        else:  # no default in the schema: nothing but "absent" here (or a nested section, checked itself)
            assert default in (None, ()) or isinstance(default, S.Section), f"{cls.__name__}.{f.name}: {default!r}"


def test_every_default_in_the_schema_is_a_section_field():
    covered = {tuple(cls.SCHEMA) for cls in SECTION_CLASSES} | {("$defs", "test_split")}
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            if "default" in node and path[-2] == "properties":
                found.append(path)
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*path, i))

    walk(load_schema(), ())
    assert len(found) >= 20
    assert [p for p in found if p[:-2] not in covered] == []
    # test_split's defaults are validation_split's: SplitConfig reads both
    for key, value in _schema_node(("$defs", "test_split", "properties")).items():
        assert value.get("default") == _schema_node(("$defs", "validation_split", "properties"))[key].get("default")


def test_an_absent_section_is_every_default(write_spec):
    sections = load_spec(write_spec(MINIMAL)).sections
    assert sections.outputs == S.OutputsConfig()
    assert sections.device == S.DeviceConfig()
    assert (sections.train.loop, sections.train.validation_freq, sections.train.initial_epoch) == ("fit", 1, 0)
    assert sections.outputs.checkpoints.interval == 30.0 and not sections.outputs.checkpoints.saves_every_epoch
    assert sections.outputs.mlflow is None
    assert not sections.data.validation and not sections.data.test
    assert list(sections.data.splits) == ["train"]
    assert sections.seed is None and sections.name == "tiny"


def test_a_section_reads_the_specs_values(write_spec):
    text = MINIMAL.replace("train:\n  epochs: 2", "seed: 7\ntrain:\n  epochs: 2\n  loop: custom\n  validation_freq: 3\n"
                           "  initial_epoch: 1\n  report: {epoch: 'Epoch {epoch}'}\n  metrics: [mae]")
    text = text.replace("model:", "  validation:\n    fraction: 0.25\n    shuffle: false\nmodel:")
    text += ("outputs:\n  dir: out\n  save_model: keras\n  export: [saved_model]\n  checkpoints: {every_epoch: true}\n"
             "  plots: {confusion_matrix: false}\n  mlflow: {experiment: e1}\n"
             "device:\n  placement: cpu\n  strategy: {name: mirrored, devices: ['/cpu:0']}\n  jit_compile: true\n")
    spec = load_spec(write_spec(text))
    train, outputs, device, data = spec.sections.train, spec.sections.outputs, spec.sections.device, spec.sections.data
    assert (train.loop, train.epochs, train.validation_freq, train.initial_epoch) == ("custom", 2, 3, 1)
    assert train.total_epochs == 2
    assert train.metrics == ["mae"] and train.loss == "mse" and train.optimizer == {"SGD": {"learning_rate": 0.05}}
    assert train.report.epoch == "Epoch {epoch}" and train.report.initial is None and bool(train.report)
    assert train.report.as_dict() == {"epoch": "Epoch {epoch}"}
    assert (outputs.dir, outputs.save_model, outputs.export) == ("out", "keras", ("saved_model",))
    assert outputs.checkpoints.enabled and outputs.checkpoints.saves_every_epoch and outputs.checkpoints.interval == 0
    assert (outputs.plots.enabled, outputs.plots.confusion_matrix) == (True, False)
    assert outputs.mlflow.experiment == "e1" and outputs.mlflow.tracking_uri is None
    assert outputs.declares("dir") and not outputs.declares("tensorboard")
    assert (device.placement, device.strategy_name, device.jit_compile) == ("cpu", "mirrored", True)
    assert device.strategy == {"name": "mirrored", "devices": ["/cpu:0"]}
    assert (data.validation.name, data.validation.fraction, data.validation.shuffle, data.validation.stratify) == \
        ("validation", 0.25, False, False)
    assert list(data.splits) == ["train", "validation"] and data.train.stages == ({"batch": {"batch_size": 4}},)
    assert spec.sections.model.kind == "sequential" and spec.sections.model.sequential["input_shape"] == [1]
    assert spec.sections.seed == 7
    assert spec.sections is spec.sections  # built once


def test_checkpoints_false_and_true():
    assert not S.CheckpointsConfig.of(False).enabled and not S.CheckpointsConfig.of(False).saves_every_epoch
    assert S.CheckpointsConfig.of(True) == S.CheckpointsConfig() == S.CheckpointsConfig.of(None)
    assert S.CheckpointsConfig.of({"every_seconds": 0}).saves_every_epoch
    assert not S.CheckpointsConfig.of({"every_epoch": True, "enabled": False}).saves_every_epoch


def test_an_error_through_a_section_is_located(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    path = spec.file
    assert str(spec.sections.train.error("epochs", "too many")) == f"{path}:17:3: train.epochs: too many"
    error = spec.sections.data.train.error(("stages", 0), "no", at_value=True)
    assert str(error) == f"{path}:10:9: data.train.stages[0]: no"
    # a key the spec leaves out is located at its section
    assert str(spec.sections.train.error("validation_freq", "x")) == f"{path}:16:1: train.validation_freq: x"
    assert str(spec.sections.train.error(None, "whole")) == f"{path}:16:1: train: whole"


def test_an_error_through_a_set_override_names_it(write_spec):
    spec = load_spec(write_spec(MINIMAL), overrides=["train.epochs=3"])
    assert spec.sections.train.epochs == 3
    assert str(spec.sections.train.error("epochs", "too many")) == "--set train.epochs=3: train.epochs: too many"


def test_sections_are_frozen_and_own_their_values(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    train = spec.sections.train
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.epochs = 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.sections.outputs.checkpoints.enabled = False
    train.optimizer["SGD"]["learning_rate"] = 1.0  # a copy: the document keeps what the spec says
    assert spec.doc["train"]["optimizer"] == {"SGD": {"learning_rate": 0.05}}
    assert train.as_dict() == spec.doc["train"] and train.as_dict() is not spec.doc["train"]


def test_refresh_reads_a_changed_document(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    assert spec.sections.train.epochs == 2
    spec.doc["train"]["epochs"] = 4
    assert spec.sections.train.epochs == 2  # built once
    spec.refresh()
    assert spec.sections.train.epochs == 4


def test_set_value_and_remove_keep_the_sections_in_step(write_spec):
    sweep = "sweep: {parameters: {train.epochs: {int: [1, 3]}}, objective: train.loss}\n"
    spec = load_spec(write_spec(MINIMAL + sweep))
    assert spec.sections.outputs.dir == "runs"
    spec.set_value(("outputs", "dir"), "elsewhere")
    spec.set_value(("name",), "trial-0001")
    assert (spec.sections.outputs.dir, spec.sections.name) == ("elsewhere", "trial-0001")
    assert spec.doc["outputs"] == {"dir": "elsewhere"}
    assert spec.remove("sweep")["objective"] == "train.loss" and "sweep" not in spec.doc
    assert spec.remove("sweep") is None


def test_a_function_given_the_spec_or_its_section_reads_the_same(write_spec):
    from runner.environment import libraries_for

    spec = load_spec(write_spec(MINIMAL))
    assert S.section(spec, "train") is spec.sections.train
    assert S.section(spec.sections.train, "train") is spec.sections.train
    assert libraries_for(spec.sections.data) == libraries_for(spec.doc) == ("tensorflow", "keras", "protobuf")
    synthetic = "      synthetic:\n        x: {linspace: {start: -1.0, stop: 1.0, num: 8}}\n        y: {linear: {w: 2.0, b: 0.5}}"
    tfds = load_spec(write_spec(MINIMAL.replace(synthetic, "      tfds: {name: mnist, split: train}")))
    assert libraries_for(tfds.sections.data)[-1] == "tensorflow-datasets"
