"""The spec contract: schema errors are located, worded plainly and sorted; overrides work."""

from __future__ import annotations

import json

import jsonschema
import pytest

from runner.spec.errors import SpecError
from runner.spec import load_schema, load_spec
from tests.conftest import SPECS

MINIMAL = """\
version: 1
name: tiny
data:
  train:
    source:
      synthetic:
        x: {linspace: {start: -1.0, stop: 1.0, num: 8}}
        y: {linear: {w: 2.0, b: 0.5}}
    stages:
      - batch: {batch_size: 4}
model:
  sequential:
    input_shape: [1]
    layers:
      - Dense: {units: 1}
train:
  epochs: 2
  loss: mse
  optimizer:
    SGD: {learning_rate: 0.05}
"""


def errors_of(path, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(path, overrides)
    return [str(e) for e in info.value.errors]


def test_schema_is_valid_draft_2020_12_with_an_id():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]


def test_every_property_in_the_schema_has_a_description():
    missing = []

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{where}.{name}")
            for key, sub in node.items():
                walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}[{i}]")

    walk(load_schema(), "$")
    assert missing == []


@pytest.mark.parametrize("spec_file", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_spec_validates_and_names_the_schema(spec_file):
    assert load_spec(spec_file).doc["version"] == 1
    schema = "pipeline.partial" if "\nextends:" in spec_file.read_text() else "pipeline"  # a part: tests/spec/test_compose.py
    assert spec_file.read_text().startswith(f"# yaml-language-server: $schema=../schemas/{schema}.schema.json\n")


def test_minimal_spec_loads(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    assert spec.doc["train"]["optimizer"] == {"SGD": {"learning_rate": 0.05}}


def test_misspelled_key_is_located_with_a_did_you_mean(write_spec):
    path = write_spec(MINIMAL.replace("  optimizer:", "  optimzer:"))
    assert errors_of(path) == [f"{path}:19:3: train.optimzer: unknown key 'optimzer' (did you mean 'optimizer'?)"]


def test_wrong_type_is_located_at_the_value(write_spec):
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: two"))
    assert errors_of(path) == [f"{path}:17:11: train.epochs: expected an integer, got string 'two'"]


def test_unknown_enum_value_lists_the_choices(write_spec):
    path = write_spec(MINIMAL.replace("train:\n  epochs", "train:\n  loop: custon\n  epochs"))
    assert errors_of(path) == [f"{path}:17:9: train.loop: 'custon' is not one of 'fit', 'custom' (did you mean 'custom'?)"]


def test_missing_required_section(write_spec):
    path = write_spec(MINIMAL.split("model:")[0] + "train:" + MINIMAL.split("\ntrain:")[1])
    assert errors_of(path) == [f"{path}:1:1: missing required section 'model'"]


def test_nested_list_items_are_located(write_spec):
    path = write_spec(MINIMAL.replace("- batch: {batch_size: 4}", "- batch: {batch_size: 4}\n      - shufle: {buffer_size: 8}"))
    assert errors_of(path) == [f"{path}:11:9: data.train.stages[1].shufle: unknown key 'shufle' (did you mean 'shuffle'?)"]


def test_two_kinds_in_one_tagged_union(write_spec):
    path = write_spec(MINIMAL.replace("    source:\n      synthetic:", "    source:\n      idx: {images: a.gz}\n      synthetic:"))
    assert errors_of(path) == [
        f"{path}:5:5: data.train.source: expected exactly one of: tfds, idx, csv, npz, npy, tfrecord, synthetic, image_folder, text_folder; got 'idx', 'synthetic'"]


def test_all_errors_of_a_file_sorted_by_line(write_spec):
    path = write_spec(MINIMAL.replace("name: tiny", "name: tiny\nseeed: 1").replace("epochs: 2", "epochs: -1"))
    assert errors_of(path) == [
        f"{path}:3:1: seeed: unknown key 'seeed' (did you mean 'seed'?)",
        f"{path}:18:11: train.epochs: -1 is less than the minimum of 1",
    ]


def test_anyof_values_explain_the_alternatives(write_spec):
    path = write_spec(MINIMAL.replace("batch_size: 4", "batch_size: every"))
    assert errors_of(path) == [f"{path}:10:29: data.train.stages[0].batch.batch_size: expected an integer >= 1 or 'all', got string 'every'"]


def test_version_must_be_1(write_spec):
    path = write_spec(MINIMAL.replace("version: 1", "version: 2"))
    assert errors_of(path) == [f"{path}:1:10: version: expected 1, got 2"]


def test_cross_field_rule_module_model_needs_custom_loop(write_spec):
    text = MINIMAL.replace("  sequential:\n    input_shape: [1]\n    layers:\n      - Dense: {units: 1}", "  module:\n    linear: {w: 5.0, b: 0.0}")
    path = write_spec(text.replace("train:\n  epochs", "train:\n  loop: fit\n  epochs"))
    assert errors_of(path) == [f"{path}:15:9: train.loop: a module model trains with loop: custom (Keras fit needs a Keras model)"]


def test_validation_needs_source_or_fraction(write_spec):
    path = write_spec(MINIMAL.replace("model:", "  validation:\n    stages: []\nmodel:"))
    assert errors_of(path) == [f"{path}:11:3: data.validation: give either 'source' or 'fraction', not both or neither"]


def test_a_whole_number_written_as_a_float_is_no_integer(write_spec):
    """YAML's 2.0 is a float: Keras and tf.data refuse it, so validate does (JSON Schema alone would not)."""
    path = write_spec(MINIMAL.replace("epochs: 2", "epochs: 2.0").replace("batch_size: 4", "batch_size: 4.0"))
    assert errors_of(path) == [
        f"{path}:10:29: data.train.stages[0].batch.batch_size: expected an integer >= 1 or 'all', got number 4.0",
        f"{path}:17:11: train.epochs: expected an integer, got number 2.0"]
    assert errors_of(write_spec(MINIMAL), ["train.epochs=3.0"])[0].endswith("expected an integer, got number 3.0")


def test_nan_anywhere_and_a_mapping_alternatives_own_mistake_are_named(write_spec):
    """NaN passes every JSON Schema bound; a mapping given where a mapping or a name is allowed
    is told what is wrong inside it, not "expected a mapping, got a mapping"."""
    path = write_spec(MINIMAL + "  class_weight: {0: -1.0, 1: .nan}\n")
    assert [e.split(": ", 1)[1] for e in errors_of(path, ["train.optimizer.SGD.learning_rate=.nan"])] == [
        "train.optimizer.SGD.learning_rate: not a number (.nan): no size, rate or weight is one",
        "train.class_weight[0]: -1.0 is less than the minimum of 0",
        "train.class_weight[1]: not a number (.nan): no size, rate or weight is one"]


def test_infinity_is_refused_where_nan_is_and_kept_where_it_is_a_bound(write_spec):
    """An infinite rate or weight trains into NaN (the loss diverges at the first step);
    a bound at infinity (a clip's max, ReLU's max_value, a clipvalue) is no bound and runs."""
    path = write_spec(MINIMAL + "  class_weight: {0: -.inf, 1: 1.0}\n")
    assert [e.split(": ", 1)[1] for e in errors_of(path, ["train.optimizer.SGD.learning_rate=.inf"])] == [
        "train.optimizer.SGD.learning_rate: infinite (.inf): no size, rate or weight is one "
        "(a bound such as clip's max may be)",
        "train.class_weight[0]: -inf is less than the minimum of 0",
        "train.class_weight[0]: infinite (-.inf): no size, rate or weight is one (a bound such as clip's max may be)"]
    assert "--set train.epochs=.inf: train.epochs: infinite (.inf): no size, rate or weight is one (a bound such " \
           "as clip's max may be)" in errors_of(write_spec(MINIMAL), ["train.epochs=.inf"])
    bounds = MINIMAL.replace("      - Dense: {units: 1}", "      - ReLU: {max_value: .inf}\n      - Dense: {units: 1}")
    bounds = bounds.replace("SGD: {learning_rate: 0.05}", "SGD: {learning_rate: 0.05, clipvalue: .inf}")
    bounds = bounds.replace("      - batch:", "      - map: {ops: [clip: {min: -.inf, max: .inf}]}\n      - batch:")
    assert load_spec(write_spec(bounds)).doc["train"]["optimizer"]["SGD"]["clipvalue"] == float("inf")


def test_scientific_notation_is_a_float(write_spec):
    spec = load_spec(write_spec(MINIMAL.replace("learning_rate: 0.05", "learning_rate: 1e-3")))
    assert spec.doc["train"]["optimizer"]["SGD"]["learning_rate"] == 0.001


def test_error_locates_keys_values_and_unknown_paths(write_spec):
    spec = load_spec(write_spec(MINIMAL))
    assert str(spec.error(("model", "sequential", "layers", 0, "Dense"), "bad")) == f"{spec.file}:15:9: model.sequential.layers[0].Dense: bad"
    assert spec.error(("train", "epochs"), "x", at_value=True).column == 11
    assert spec.error(("train", "nothing", "here"), "x").line == 16  # falls back to the nearest known parent


# ---------------------------------------------------------------------------- overrides


def test_override_sets_nested_values_and_list_items(write_spec):
    spec = load_spec(write_spec(MINIMAL), ["data.train.stages.0.batch.batch_size=2", "train.epochs=5",
                                           "device.strategy=mirrored", "train.optimizer.SGD.learning_rate=1e-2"])
    assert spec.doc["data"]["train"]["stages"][0]["batch"]["batch_size"] == 2
    assert spec.doc["train"]["epochs"] == 5
    assert spec.doc["device"] == {"strategy": "mirrored"}
    assert spec.doc["train"]["optimizer"]["SGD"]["learning_rate"] == 0.01


def test_override_of_unknown_key_names_the_closest(write_spec):
    assert errors_of(write_spec(MINIMAL), ["train.epocs=3"]) == [
        "--set train.epocs=3: unknown key 'epocs' in train (did you mean 'epochs'?)"]


def test_override_value_is_checked_by_the_schema(write_spec):
    assert errors_of(write_spec(MINIMAL), ["train.epochs=many"]) == [
        "--set train.epochs=many: train.epochs: expected an integer, got string 'many'"]


def test_override_list_index_out_of_range(write_spec):
    assert errors_of(write_spec(MINIMAL), ["data.train.stages.7.batch.batch_size=2"]) == [
        "--set data.train.stages.7.batch.batch_size=2: data.train.stages has 1 items; no index 7"]


def test_override_without_equals(write_spec):
    assert errors_of(write_spec(MINIMAL), ["train.epochs"]) == ["--set train.epochs: expected KEY.PATH=VALUE"]


def test_a_control_character_in_a_set_value_names_the_set(write_spec):
    assert errors_of(write_spec(MINIMAL), ["name=a\u202eb"]) == [
        "--set name=a\\u202eb: control character U+202E in a --set value; a spec is plain text"]


def test_schema_document_is_what_pipe_schema_prints():
    from typer.testing import CliRunner

    from runner.cli import app

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == load_schema()


def test_steps_per_execution_is_a_count_or_auto(write_spec):
    path = write_spec(MINIMAL)
    assert load_spec(path, ["train.steps_per_execution=auto"]).doc["train"]["steps_per_execution"] == "auto"
    assert errors_of(path, ["train.steps_per_execution=0"]) == [
        "--set train.steps_per_execution=0: train.steps_per_execution: expected an integer >= 1 and <= 2147483647 "
        "or 'auto', got integer 0"]


def test_steps_per_execution_is_bounded_and_divides_fits_steps_per_epoch(write_spec):
    path = write_spec(MINIMAL)
    assert errors_of(path, ["train.steps_per_execution=2147483648"]) == [
        "--set train.steps_per_execution=2147483648: train.steps_per_execution: expected an integer >= 1 and "
        "<= 2147483647 or 'auto', got integer 2147483648"]
    assert errors_of(path, ["train.steps_per_epoch=5", "train.steps_per_execution=3"]) == [
        "--set train.steps_per_execution=3: train.steps_per_execution: 3 does not divide steps_per_epoch 5: "
        "with loop: fit every call runs 3 steps, so epochs would run more steps than asked; use a divisor, "
        "or loop: custom"]
    assert load_spec(path, ["train.steps_per_epoch=6", "train.steps_per_execution=3"])


def test_checkpoints_take_an_interval_or_a_boolean(write_spec):
    path = write_spec(MINIMAL)
    assert load_spec(path, ["outputs.checkpoints={every_seconds: 10}"]).doc["outputs"]["checkpoints"] == {"every_seconds": 10}
    assert load_spec(path, ["outputs.checkpoints=false"]).doc["outputs"]["checkpoints"] is False
    assert errors_of(path, ["outputs.checkpoints={every_minute: 1}"]) == [
        "--set outputs.checkpoints={every_minute: 1}: outputs.checkpoints.every_minute: unknown key 'every_minute' (did you mean 'every_epoch'?)"]


def test_save_model_names_a_format(write_spec):
    path = write_spec(MINIMAL)
    assert load_spec(path, ["outputs.save_model=saved_model"]).doc["outputs"]["save_model"] == "saved_model"
    assert errors_of(path, ["outputs.save_model=onnx"]) == [
        "--set outputs.save_model=onnx: outputs.save_model: expected true or false or one of 'keras', 'saved_model', got string 'onnx'"]
