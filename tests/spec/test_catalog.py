"""The static Keras catalog: what it holds, how validate reads it, and `pipe schema --keras`."""

from __future__ import annotations

import json

import jsonschema
from typer.testing import CliRunner

from conftest import REPO, SPECS
from runner.cli import app
from runner.spec import catalog, yamlfile
from runner.spec.schema import partial_schema


def test_catalog_records_keras_version_names_arguments_and_aliases():
    data = catalog.load_catalog()
    assert data["keras_version"].count(".") == 2
    assert set(data["kinds"]) == {"layers", "activations", "losses", "optimizers", "schedules", "metrics",
                                  "callbacks", "initializers", "regularizers", "constraints", "applications"}
    dense = catalog.lookup("layers", "Dense")
    assert dense.required == ["units"]
    assert dense.arguments["use_bias"] == {"name": "use_bias", "required": False, "default": True, "type": "bool"}
    # Base-class keywords a layer accepts: its constructor's, Layer's, and those Layer pops from **kwargs.
    assert {"name", "dtype", "trainable", "input_shape"} <= set(dense.arguments)
    assert catalog.lookup("optimizers", "adam").name == "Adam"
    assert catalog.lookup("losses", "mse").name == "mean_squared_error"
    assert catalog.lookup("losses", "sparse_categorical_crossentropy").is_function
    assert catalog.lookup("schedules", "ExponentialDecay").required == ["initial_learning_rate", "decay_steps",
                                                                         "decay_rate"]
    # A base class's required argument that the subclass fills in is not the user's to give.
    assert "cell" not in catalog.lookup("layers", "LSTM").arguments
    assert catalog.lookup("layers", "Dens") is None


def test_abstract_bases_are_derived_refused_and_never_suggested(write_spec):
    """A class whose work Keras leaves to subclasses (Loss.call, Metric.update_state,
    Optimizer.update_step, ...) is marked by the catalog script, refused by validate, and is
    no did-you-mean candidate; a subclass with its own entry point (LossScaleOptimizer) is usable."""
    abstract = {(k, n) for k, t in catalog.load_catalog()["kinds"].items() for n, e in t["names"].items()
                if e.get("abstract")}
    assert {("losses", "Loss"), ("metrics", "Metric"), ("optimizers", "Optimizer"), ("layers", "Layer"),
            ("schedules", "LearningRateSchedule"), ("initializers", "Initializer")} <= abstract
    assert not abstract & {("optimizers", "LossScaleOptimizer"), ("layers", "Dense"), ("losses", "MeanSquaredError")}
    assert all(n not in catalog.names(k) for k, n in abstract)
    assert "metric" not in catalog.names("metrics")  # an alias of Metric
    spec = (REPO / "tests" / "mistakes" / "88_the_base_class_loss.yaml").read_text()
    path = write_spec(spec.replace("loss: Loss", "loss: NotALoss"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1 and "unknown loss 'NotALoss'" in result.output and "'Loss'" not in result.output
    result = CliRunner().invoke(app, ["validate", str(write_spec(spec.replace("loss: Loss", "loss: {Loss: {}}")))])
    assert result.exit_code == 1
    assert "train.loss.Loss: 'Loss' is the base class of Keras losses, not a loss (name one of its subclasses" \
        in result.output


def test_schema_keras_folds_the_catalog_into_the_schema():
    result = CliRunner().invoke(app, ["schema", "--keras"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    layers = schema["$defs"]["keras_layers"]
    assert "Dense" in layers["anyOf"][0]["enum"]
    dense = layers["anyOf"][1]["properties"]["Dense"]
    assert dense["properties"]["units"]["description"] == "units (required)"
    assert dense["additionalProperties"] is False
    validator = jsonschema.Draft202012Validator(schema)
    partial = jsonschema.Draft202012Validator(partial_schema(schema))  # a file with extends, or a base
    for path in sorted(SPECS.rglob("*.yaml")):
        doc = yamlfile.parse(path.read_text()).data
        check = partial if "extends" in doc or path.parent.name == "base" else validator
        assert list(check.iter_errors(doc)) == [], path
    typo = yamlfile.parse((REPO / "tests" / "mistakes" / "01_layer_name_typo.yaml").read_text()).data
    assert [e.json_path for e in validator.iter_errors(typo)] == ["$.model.sequential.layers[0]"]



def test_a_keras_applications_backbone_is_checked_where_a_layer_goes(tmp_path):
    from runner.spec import SpecErrors, load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nname: backbone\n"
        "data: {train: {source: {npy: {features: x.npy, label: y.npy}}}}\n"
        "model:\n  sequential:\n    layers:\n"
        "      - MobileNetV3Small: {input_shape: [32, 32, 3], weights: null, include_tops: false, trainable: false}\n"
        "train: {epochs: 1, loss: mse, optimizer: adam}\n")
    try:
        load_spec(spec)
    except SpecErrors as e:
        messages = [error.full_message for error in e.errors]
    assert messages == ["unknown argument 'include_tops' of MobileNetV3Small (did you mean 'include_top'?)"]
