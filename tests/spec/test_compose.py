"""Specs that compose: `extends`, layered files, `${}` references, and where errors point.

The corpus is tests/compose/: small spec files, most of them partial (a base), named after
the case they show. Paths in messages are relative to tests/, where every test here runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from runner.cli import app
from runner.spec import SpecError, load_spec, yamlfile
from runner.spec import compose as compose_module
from runner.spec.references import parse_path
from runner.spec.resolved import resolved_text
from tests.conftest import REPO

TESTS = REPO / "tests"
cli = CliRunner()


@pytest.fixture(autouse=True)
def in_tests(monkeypatch):
    monkeypatch.chdir(TESTS)


def errors_of(files, overrides=()):
    with pytest.raises(SpecError) as info:
        load_spec(files, overrides)
    return [str(e) for e in info.value.errors]


def origin(spec, *path):
    file, line = spec.origin(path)
    return f"{file}:{line}"


# --- merging ---------------------------------------------------------------------------------

def test_a_list_of_bases_makes_a_whole_spec():
    spec = load_spec("compose/regression.yaml")
    assert list(spec.doc) == ["version", "data", "model", "train", "name", "seed"]
    assert spec.doc["train"]["optimizer"] == {"SGD": {"learning_rate": 0.05, "momentum": 0.5}}
    assert "extends" not in spec.doc
    assert [str(p) for p in spec.sources] == ["compose/regression.yaml", "compose/data.yaml", "compose/model.yaml",
                                              "compose/train.yaml"]


def test_mappings_merge_key_by_key_through_a_chain():
    spec = load_spec("compose/chain.yaml")  # chain -> lr -> regression -> data, model, train
    assert spec.doc["name"] == "chain"
    assert spec.doc["train"]["optimizer"] == {"SGD": {"learning_rate": 0.1, "momentum": 0.5}}
    assert spec.doc["train"]["epochs"] == 5
    assert (origin(spec, "train", "optimizer", "SGD", "learning_rate"), origin(spec, "train", "optimizer", "SGD", "momentum"),
            origin(spec, "train", "loss"), origin(spec, "train", "epochs")) == (
        "compose/lr.yaml:4", "compose/train.yaml:5", "compose/train.yaml:4", "compose/chain.yaml:4")


def test_null_removes_a_key():
    spec = load_spec("compose/chain.yaml")
    assert "metrics" not in spec.doc["train"]
    assert "metrics" in load_spec("compose/lr.yaml").doc["train"]


@pytest.mark.parametrize("name, message", [
    ("null_misspelt", "compose/null_misspelt.yaml:3:11: train.metrcs: null removes nothing: no key 'metrcs' in the "
                      "bases (did you mean 'metrics'?)"),
    ("null_required", "compose/null_required.yaml:4:3: train: missing required key 'loss' (a null removed it)"),
    ("null_required_chain", "compose/null_required.yaml:4:3: train: missing required key 'loss' (a null removed it) "
                            "[from compose/null_required_chain.yaml]"),
])
def test_a_null_is_checked_and_errors_about_what_it_removed_point_at_it(name, message):
    assert errors_of(f"compose/{name}.yaml") == [message]


def test_a_null_in_a_layer_that_removes_nothing_is_an_error():
    assert errors_of(["compose/regression.yaml", "compose/null_misspelt.yaml"]) == [
        "compose/null_misspelt.yaml:3:11: train.metrcs: null removes nothing: no key 'metrcs' in the bases "
        "(did you mean 'metrics'?) [from compose/regression.yaml + compose/null_misspelt.yaml]"]


def test_a_keras_short_form_naming_another_class_replaces_the_base_one():
    spec = load_spec("compose/another_optimizer.yaml")  # Adam over lr.yaml's SGD over train.yaml's
    assert spec.doc["train"]["optimizer"] == {"Adam": {"learning_rate": 0.001}}
    assert origin(spec, "train", "optimizer", "Adam", "learning_rate") == "compose/another_optimizer.yaml:5"
    assert load_spec("compose/chain.yaml").doc["train"]["optimizer"] == {"SGD": {"learning_rate": 0.1, "momentum": 0.5}}
    assert compose_module.merge_values({"train": {"optimizer": {"Adam": {"a": 1}}, "m": {"a": {"x": 1}}}},
                                       {"train": {"optimizer": {"SGD": {"b": 2}}, "m": {"b": {"y": 2}}}}) == {
        "train": {"optimizer": {"SGD": {"b": 2}}, "m": {"a": {"x": 1}, "b": {"y": 2}}}}  # lower-case keys still merge


@pytest.mark.parametrize("name, optimizer, line", [
    ("class_name_optimizer", {"class_name": "Adam", "config": {"learning_rate": 0.002}}, 5),  # over {SGD: ...}
    ("short_over_class_name", {"RMSprop": {"rho": 0.8}}, 4),  # over class_name: Adam
    ("alias_optimizer", {"class_name": "Adam", "config": {"learning_rate": 0.002, "beta_1": 0.8}}, 5),
    ("alias_short", {"SGD": {"learning_rate": 0.05, "momentum": 0.9}}, 4),  # sgd over SGD
])
def test_another_class_in_either_form_replaces_and_the_same_class_merges(name, optimizer, line):
    spec = load_spec(f"compose/{name}.yaml")
    assert spec.doc["train"]["optimizer"] == optimizer
    assert origin(spec, "train", "optimizer", *list(optimizer)[-1:]) == f"compose/{name}.yaml:{line}"


def test_the_replacement_rule_holds_for_losses_and_schedules_only_where_keras_names_go():
    base = {"train": {"loss": {"Huber": {"delta": 2.0}},
                      "optimizer": {"Adam": {"learning_rate": {"ExponentialDecay": {"decay_steps": 10}}}}},
            "data": {"train": {"source": {"csv": {"fill": {"X": "mean"}}}}}}
    layer = {"train": {"loss": {"class_name": "MeanSquaredError", "config": {}},
                       "optimizer": {"adam": {"learning_rate": {"CosineDecay": {"decay_steps": 5}}}}},
             "data": {"train": {"source": {"csv": {"fill": {"Y": "median"}}}}}}
    assert compose_module.merge_values(base, layer) == {
        "train": {"loss": {"class_name": "MeanSquaredError", "config": {}},
                  "optimizer": {"Adam": {"learning_rate": {"CosineDecay": {"decay_steps": 5}}}}},
        "data": {"train": {"source": {"csv": {"fill": {"X": "mean", "Y": "median"}}}}}}
    assert compose_module.compose(["compose/fill_child.yaml"]).doc["data"]["train"]["source"]["csv"]["fill"] == {
        "X": "mean", "Y": "median"}


@pytest.mark.parametrize("name, keys", [
    ("mixed_forms", "'Adam' (compose/mixed_forms.yaml:4) and 'class_name' (compose/mixed_forms.yaml:4)"),
    ("two_names", "'Adam' (compose/two_names.yaml:5) and 'SGD' (compose/two_names.yaml:6)"),
])
def test_an_identifier_of_two_names_or_mixed_forms_is_an_error(name, keys):
    assert errors_of(f"compose/{name}.yaml") == [
        f"compose/{name}.yaml:4:3: train.optimizer: optimizer: one identifier names one class, but this mapping "
        f"has {keys}; write {{Name: {{arguments}}}} or {{class_name: Name, config: {{...}}}} (keep one; a later "
        f"file removes a base's with 'Adam: null')"]


def test_lists_replace_rather_than_merge():
    spec = load_spec("compose/stages.yaml")
    assert spec.doc["data"]["train"]["stages"] == [{"batch": {"batch_size": 8}}]
    assert spec.doc["data"]["train"]["source"]["synthetic"]["y"] == {"linear": {"w": 3.0, "b": 2.0}}
    assert origin(spec, "data", "train", "stages", 0, "batch", "batch_size") == "compose/stages.yaml:6"


def test_later_bases_win_over_earlier_ones_and_the_file_over_all():
    spec = load_spec("compose/bases_in_order.yaml")  # [regression, later_base -> [train, epochs3]]
    assert spec.doc["train"]["epochs"] == 3
    assert origin(spec, "train", "epochs") == "compose/epochs3.yaml:2"
    assert spec.doc["name"] == "bases_in_order"


def test_extends_paths_are_relative_to_the_file_that_names_them():
    spec = load_spec("compose/sub/deep.yaml")
    assert spec.doc["name"] == "deep"
    assert origin(spec, "data", "train", "stages") == "compose/data.yaml:9"


def test_a_base_reached_twice_is_not_a_cycle():
    spec = load_spec("compose/diamond.yaml")  # left and right both extend data.yaml
    assert spec.doc["train"]["optimizer"] == "sgd" and spec.doc["model"]["sequential"]["input_shape"] == [1]
    assert [str(p) for p in spec.sources] == ["compose/diamond.yaml", "compose/sub/left.yaml", "compose/data.yaml",
                                              "compose/sub/right.yaml"]


def test_yaml_1_2_rules_hold_in_every_file():
    spec = load_spec("compose/extends_yaml12.yaml")
    assert (spec.doc["train"]["epochs"], spec.doc["train"]["optimizer"]["SGD"]["learning_rate"],
            spec.doc["description"]) == (10, 0.01, "on")


def test_a_spec_without_extends_loads_as_before(write_spec):
    path = write_spec("version: 1\nname: x\ndata: {train: {source: {synthetic: {x: {linspace: {start: 0.0, stop: 1.0, "
                      "num: 4}}, y: {linear: {w: 1.0, b: 0.0}}}}}}\nmodel: {sequential: {input_shape: [1], layers: "
                      "[{Dense: {units: 1}}]}}\ntrain: {epochs: 1, loss: mse, optimizer: sgd}\n")
    spec = load_spec(path)
    assert spec.sources == [path] and spec.error(("train", "epochs"), "x").file == path


def test_the_merge_rules_for_plain_values():
    base = {"train": {"epochs": 2, "optimizer": {"SGD": {"learning_rate": 0.1}}, "metrics": ["mae"]}, "seed": 1}
    layer = {"train": {"optimizer": {"SGD": {"momentum": 0.9}}, "metrics": None}, "seed": [1, 2]}
    assert compose_module.merge_values(base, layer) == {
        "train": {"epochs": 2, "optimizer": {"SGD": {"learning_rate": 0.1, "momentum": 0.9}}}, "seed": [1, 2]}
    assert base["train"]["metrics"] == ["mae"] and layer["train"]["metrics"] is None  # neither changed


# --- layered files and --set -----------------------------------------------------------------

def test_layered_files_merge_later_over_earlier():
    spec = load_spec(["compose/regression.yaml", "compose/layer_epochs.yaml"])
    assert (spec.doc["name"], spec.doc["train"]["epochs"]) == ("layered", 7)
    assert spec.file.name == "layer_epochs.yaml"
    assert origin(spec, "train", "epochs") == "compose/layer_epochs.yaml:2"
    assert origin(spec, "train", "loss") == "compose/train.yaml:4"


def test_set_goes_over_the_last_layer():
    spec = load_spec(["compose/regression.yaml", "compose/layer_epochs.yaml"], ["train.epochs=9"])
    assert spec.doc["train"]["epochs"] == 9
    assert str(spec.error(("train", "epochs"), "no")) == "--set train.epochs=9: train.epochs: no"


def test_set_null_removes_a_key_as_a_layered_null_does():
    assert "metrics" not in load_spec("compose/regression.yaml", ["train.metrics=null"]).doc["train"]
    assert errors_of("compose/regression.yaml", ["train.loss=null"]) == [
        "--set train.loss=null: train: missing required key 'loss' (a null removed it)"]
    assert errors_of("compose/chain.yaml", ["train.metrics=null"]) == [  # chain.yaml removed it already
        "--set train.metrics=null: null removes nothing: no key 'metrics' in train"]


def test_a_required_keras_argument_removed_or_null_points_at_its_null():
    assert errors_of("compose/regression.yaml", ["model.sequential.layers.0.Dense.units=null"]) == [
        "--set model.sequential.layers.0.Dense.units=null: model.sequential.layers[0].Dense: Dense needs the "
        "argument 'units' (a null removed it)"]
    assert errors_of("compose/regression.yaml", ["model.sequential.layers=[{Dense: {units: null}}]"]) == [
        "--set model.sequential.layers=[{Dense: {units: null}}]: model.sequential.layers[0].Dense.units: Dense "
        "needs the argument 'units' (null gives it no value)"]
    assert errors_of("compose/units_null.yaml") == [
        "compose/units_null.yaml:6:17: model.sequential.layers[0].Dense.units: Dense needs the argument 'units' "
        "(null gives it no value)"]


@pytest.mark.parametrize("override, message", [
    ("train.metrics.-1=mse", "train.metrics: --set counts list items from 0; no index -1 (it has 1 items)"),
    ("train.metrics.0=null", "train.metrics: null cannot remove a list item; set the whole list, e.g. --set "
                             "'train.metrics=[...]'"),
    ("train.metrics.3=mse", "train.metrics has 1 items; no index 3"),
])
def test_set_list_items_count_from_0_and_null_does_not_remove_one(override, message):
    assert errors_of("compose/regression.yaml", [override]) == [f"--set {override}: {message}"]


def test_references_see_later_layers_and_set():
    spec = load_spec(["compose/regression.yaml", "compose/layer_references.yaml"], ["train.epochs=6"])
    assert spec.doc["model"]["sequential"]["layers"] == [{"Dense": {"units": 6}}, {"Dense": {"units": 1}}]


def test_an_error_in_a_layer_names_that_layer():
    assert errors_of(["compose/regression.yaml", "compose/layer_bad.yaml"]) == [
        "compose/layer_bad.yaml:2:11: train.epochs: -1 is less than the minimum of 1 "
        "[from compose/regression.yaml + compose/layer_bad.yaml]"]


@pytest.mark.parametrize("override", ["extends=data.yaml", "extends.0=data.yaml"])
def test_extends_cannot_be_set(override):
    assert errors_of("compose/regression.yaml", [override]) == [
        f"--set {override}: extends cannot be set with --set; give the files to layer on the command line"]


def test_a_mistaken_set_does_not_hide_the_other_mistakes():
    assert errors_of("compose/regression.yaml", ["trian.epochs=3", "train.epochs=0"]) == [
        "--set trian.epochs=3: unknown key 'trian' in the spec (did you mean 'train'?)",
        "--set train.epochs=0: train.epochs: 0 is less than the minimum of 1"]
    assert errors_of("compose/regression.yaml", ["train.metrics=[${train.loss}]"]) == [
        "--set train.metrics=[${train.loss}]: YAML syntax error: expected ',' or ']', but got '{' (quote a ${...} "
        "reference inside [ ] or { }: --set 'train.metrics=[\"${...}\"]')"]


def test_set_errors_in_github_format_name_no_file():
    result = cli.invoke(app, ["validate", "compose/regression.yaml", "--set", "trian.epochs=3", "--set",
                              "train.epochs=0", "--format", "github"])
    assert result.stdout.splitlines() == [
        "::error::--set trian.epochs=3: unknown key 'trian' in the spec (did you mean 'train'?)",
        "::error::--set train.epochs=0: train.epochs: 0 is less than the minimum of 1"]


# --- references -----------------------------------------------------------------------------

def test_references_keep_their_type_or_interpolate():
    spec = load_spec("compose/references.yaml")
    assert spec.doc["name"] == "references-4"
    assert spec.doc["description"] == "lr 0.1 momentum 0.5, fit fit"
    assert spec.doc["model"]["sequential"]["layers"] == [
        {"Dense": {"units": 4}}, {"Dense": {"units": 4}}, {"Dense": {"units": 1}}, {"Dense": {"units": 1}}]


def test_a_reference_may_index_a_list_with_a_dot_as_set_does():
    spec = load_spec("compose/reference_dot_index.yaml")  # ${model.sequential.layers.0.Dense.units}
    assert spec.doc["train"]["epochs"] == 1
    assert origin(spec, "train", "epochs") == "compose/reference_dot_index.yaml:4"


def test_a_referenced_mapping_is_a_copy():
    spec = load_spec("compose/references.yaml")
    layers = spec.doc["model"]["sequential"]["layers"]
    assert layers[2] == layers[3] and layers[2] is not layers[3]
    assert "&" not in yaml.safe_dump(spec.doc)  # no anchors in the run directory's spec.yaml


def test_dataset_metadata_references_are_left_for_the_run():
    spec = load_spec("compose/reference_metadata.yaml")
    assert spec.doc["model"]["sequential"]["layers"][0] == {"Dense": {"units": "${data.num_classes}"}}


def test_environment_variables_are_not_read(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    assert errors_of("compose/regression.yaml", ["name=${HOME}"]) == [
        "--set name=${HOME}: name: ${HOME}: the spec has no HOME (a reference names a value of the spec; "
        "environment variables are not read)"]


def test_a_misspelt_dataset_reference_keeps_its_own_message(write_spec):
    assert errors_of("compose/regression.yaml", ["model.sequential.layers.0.Dense.units=${data.num_clases}"]) == [
        "--set model.sequential.layers.0.Dense.units=${data.num_clases}: model.sequential.layers[0].Dense.units: "
        "unknown reference '${data.num_clases}' (known: ${data.num_classes}, ${data.train.num_examples}, "
        "${data.validation.num_examples}, ${data.test.num_examples}) (did you mean '${data.num_classes}'?)"]


@pytest.mark.parametrize("text, path", [
    ("train.epochs", ("train", "epochs")),
    ("model.sequential.layers[0].Dense.units", ("model", "sequential", "layers", 0, "Dense", "units")),
    ("a[1][-2]", ("a", 1, -2)),
    ("train..epochs", None), ("[0]", None), ("a b", None), ("", None),
])
def test_reference_paths(text, path):
    assert parse_path(text) == path


@pytest.mark.parametrize("name, message", [
    ("reference_missing", "compose/reference_missing.yaml:4:11: train.epochs: ${train.epoch}: the spec has no "
                          "train.epoch (did you mean 'train.epochs'?)"),
    ("reference_cycle", "compose/reference_cycle.yaml:4:11: train.epochs: a cycle of references: "
                        "train.epochs -> train.steps -> train.epochs"),
    ("reference_index", "compose/reference_index.yaml:4:11: train.epochs: ${model.sequential.layers[3].Dense.units}: "
                        "model.sequential.layers has 1 item; no index 3"),
    ("reference_malformed", "compose/reference_malformed.yaml:2:7: name: ${train..epochs} is not a path to a value "
                            "(write ${section.key} or ${section.list[0].key})"),
    ("reference_unclosed", "compose/reference_unclosed.yaml:2:7: name: '${train.epochs' is not closed: a reference "
                           "is written ${path}, with its closing brace"),
    ("reference_env", "compose/reference_env.yaml:2:7: name: ${env:HOME}: the spec has no env:HOME (a reference "
                      "names a value of the spec; environment variables are not read)"),
    ("reference_unquoted_flow", "compose/reference_unquoted_flow.yaml:3:18: YAML syntax error: expected ',' or '}', "
                                "but got '{' (quote a ${...} reference inside [ ] or { }: \"${train.epochs}\")"),
    ("reference_mapping_in_text", "compose/reference_mapping_in_text.yaml:2:7: name: ${train.optimizer} is a "
                                  "mapping; only a whole value can be a reference to a mapping, not part of "
                                  "'r-${train.optimizer}'"),
])
def test_reference_errors_are_located_at_the_reference(name, message):
    assert errors_of(f"compose/{name}.yaml") == [message]


@pytest.mark.parametrize("name, message", [
    ("reference_bomb", "compose/reference_bomb.yaml:6:69: x4[7]: references expand the spec to more than 100000 "
                       "values (a reference bomb?)"),
    ("reference_text_bomb", "compose/reference_text_bomb.yaml:11:5: s9: references write more than 1 MB of text "
                            "(a reference bomb?)"),
])
def test_a_reference_bomb_stops_at_the_limit(name, message):
    assert errors_of(f"compose/{name}.yaml") == [message]


def _reference_chain(tmp_path, length, listed):
    """n<length> -> ... -> n0, written last to first so that resolving n<length> walks all of it."""
    item = '["${n%d}"]' if listed else '"${n%d}"'
    lines = [f"n{i}: {item % (i - 1)}" for i in range(length, 0, -1)]
    (tmp_path / "chain.yaml").write_text(f"extends: {TESTS}/compose/regression.yaml\n" + "\n".join(lines) + "\nn0: 1\n")
    return tmp_path / "chain.yaml"


def test_a_long_chain_of_references_is_an_error_not_a_traceback(tmp_path):
    assert errors_of(_reference_chain(tmp_path, 1000, listed=False)) == [
        f"{tmp_path}/chain.yaml:66:7: n936: a chain of more than 64 references (each names the next)"]
    assert errors_of(_reference_chain(tmp_path, 1000, listed=True)) == [
        f"{tmp_path}/chain.yaml:66:8: n936[0]: a chain of more than 64 references (each names the next)"]


def test_copies_a_reference_makes_count_toward_the_nesting_limit(tmp_path):
    file = _reference_chain(tmp_path, 70, listed=True)
    file.write_text(file.read_text().replace("n0: 1", "n0: [1]"))  # resolved first to last: no long chain
    lines = file.read_text().splitlines()
    file.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    assert errors_of(file) == [f"{tmp_path}/chain.yaml:65:7: n63[0]: the copy makes nesting deeper than 64 levels"]
    short = [line for line in lines if not line.startswith(tuple(f"n{i}:" for i in range(60, 71)))]
    file.write_text("\n".join(short) + "\n")
    assert all(e.endswith("unknown key '" + e.split("'")[1] + "'") for e in errors_of(file))


# --- extends errors, at the extends line that leads there ------------------------------------

@pytest.mark.parametrize("name, message", [
    ("missing_base", "compose/missing_base.yaml:2:10: extends: no such file: compose/no_such_base.yaml"),
    ("missing_in_list", "compose/missing_in_list.yaml:3:5: extends[1]: no such file: compose/nowhere/base.yaml"),
    ("cycle_a", "compose/cycle_b.yaml:2:22: extends[1]: extends makes a cycle: compose/cycle_a.yaml -> "
                "compose/cycle_b.yaml -> compose/cycle_a.yaml [from compose/cycle_a.yaml]"),
    ("self", "compose/self.yaml:1:10: extends: extends makes a cycle: compose/self.yaml -> compose/self.yaml"),
    ("to_directory", "compose/to_directory.yaml:1:10: extends: 'sub' is not a .yaml or .yml file; extends names "
                     "spec files only"),
    ("to_device", "compose/to_device.yaml:1:10: extends: '/dev/null' is not a .yaml or .yml file; extends names "
                  "spec files only"),
    ("not_a_spec_file", "compose/not_a_spec_file.yaml:1:10: extends: '/etc/passwd' is not a .yaml or .yml file; "
                        "extends names spec files only"),
    ("tilde", "compose/tilde.yaml:1:10: extends: '~/base.yaml': extends does not expand '~'; give a path relative "
              "to this file or an absolute one"),
    ("url", "compose/url.yaml:1:10: extends: 'https://example.com/base.yaml' is a URL; extends names local files only"),
    ("not_a_path", "compose/not_a_path.yaml:1:28: extends[1]: expected a path to a spec file, got int 3"),
    ("empty_list", "compose/empty_list.yaml:1:10: extends: extends lists no file; give a path or remove it"),
    ("trailing_slash", "compose/trailing_slash.yaml:1:10: extends: 'regression.yaml/' ends with '/'; extends names "
                       "a spec file, not a folder"),
    ("extends_reference", "compose/extends_reference.yaml:1:10: extends: '${name}.yaml': references are not "
                          "resolved in extends; write the path itself"),
])
def test_extends_errors(name, message):
    assert errors_of(f"compose/{name}.yaml") == [message]


def test_a_yaml_name_linking_to_another_kind_of_file_is_refused(tmp_path):
    (tmp_path / "secret.txt").write_text("password: hunter2\n")
    (tmp_path / "base.yaml").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "child.yaml").write_text("name: x\nextends: base.yaml\n")
    assert errors_of(tmp_path / "child.yaml") == [
        f"{tmp_path}/child.yaml:2:10: extends: {tmp_path}/base.yaml links to {tmp_path.resolve()}/secret.txt, not a "
        ".yaml or .yml file; extends names spec files only"]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "base.yaml")
    (tmp_path / "child.yaml").write_text("name: x\nextends: base.yaml\n")
    assert errors_of(tmp_path / "child.yaml") == [
        f"{tmp_path}/child.yaml:2:10: extends: {tmp_path}/base.yaml is not a regular file (a pipe or a device); "
        "a spec is a small YAML file"]


def test_a_folder_behind_a_yaml_name_is_refused(tmp_path):
    (tmp_path / "base.yaml").mkdir()
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    assert errors_of(tmp_path / "child.yaml") == [
        f"{tmp_path}/child.yaml:1:10: extends: {tmp_path}/base.yaml is a directory, not a spec file"]


def test_a_device_behind_a_yaml_name_is_refused(tmp_path):
    (tmp_path / "base.yaml").symlink_to("/dev/zero")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    assert errors_of(tmp_path / "child.yaml") == [
        f"{tmp_path}/child.yaml:1:10: extends: {tmp_path}/base.yaml is not a regular file (a pipe or a device); "
        "a spec is a small YAML file"]


def test_a_chain_deeper_than_16_is_refused(tmp_path):
    for i in range(18):
        (tmp_path / f"{i}.yaml").write_text(f"extends: {i + 1}.yaml\n" if i < 17 else "name: last\n")
    assert errors_of(tmp_path / "0.yaml") == [
        f"{tmp_path}/16.yaml:1:10: extends: extends is more than 16 files deep [from {tmp_path}/0.yaml]"]
    (tmp_path / "1.yaml").write_text("name: x\n")  # 0 -> 1: a short chain reads
    assert errors_of(tmp_path / "0.yaml")[0] == f"{tmp_path}/0.yaml:1:1: missing required section 'data'"


def test_the_node_limit_counts_across_files(tmp_path):
    bomb = "a: &a [" + ", ".join(["1"] * 100) + "]\nb: [" + ", ".join(["*a"] * 400) + "]\n"  # ~40,500 values
    for name in ("one", "two", "three"):
        (tmp_path / f"{name}.yaml").write_text(bomb)
    assert yamlfile.parse(bomb).count < yamlfile.MAX_NODES  # each file alone is allowed
    (tmp_path / "child.yaml").write_text("extends: [one.yaml, two.yaml, three.yaml]\n")
    assert errors_of(tmp_path / "child.yaml") == [
        f"{tmp_path}/child.yaml:1:31: extends[2]: the spec and its bases expand to more than 100000 values "
        "(extends used as a bomb?)"]


def test_a_base_reached_twice_counts_once_toward_the_value_limit(tmp_path):
    (tmp_path / "big.yaml").write_text("a: [" + ", ".join(["1"] * 60_000) + "]\n")
    (tmp_path / "mid.yaml").write_text("extends: big.yaml\nb: 1\n")
    (tmp_path / "child.yaml").write_text("extends: [big.yaml, mid.yaml]\n")
    assert compose_module.compose([tmp_path / "child.yaml"]).doc["b"] == 1  # 120,000 if counted twice


def test_bases_named_over_and_over_are_applied_once(tmp_path):
    (tmp_path / "f0.yaml").write_text("a: 1\n")
    for i in range(1, 12):
        (tmp_path / f"f{i}.yaml").write_text(f"extends: [f{i - 1}.yaml, f{i - 1}.yaml]\nb{i}: {i}\n")
    composed = compose_module.compose([tmp_path / "f11.yaml"])
    assert composed.doc == {"a": 1, **{f"b{i}": i for i in range(1, 12)}}


def test_a_base_shared_by_two_bases_is_applied_once_where_first_reached(tmp_path):
    (tmp_path / "shared.yaml").write_text("train: {epochs: 2, loss: mse}\n")
    (tmp_path / "left.yaml").write_text("extends: shared.yaml\ntrain: {epochs: 5}\n")
    (tmp_path / "right.yaml").write_text("extends: shared.yaml\ntrain: {loss: mae}\n")
    (tmp_path / "top.yaml").write_text("extends: [left.yaml, right.yaml]\n")
    composed = compose_module.compose([tmp_path / "top.yaml"])
    assert composed.doc == {"train": {"epochs": 5, "loss": "mae"}}
    assert composed.key_marks[("train", "epochs")][2] == tmp_path / "left.yaml"


@pytest.mark.parametrize("name, message", [
    ("extends_bad_syntax", "compose/bad_syntax_base.yaml:3:1: YAML syntax error: expected ',' or ']', but got "
                           "'<stream end>' [from compose/extends_bad_syntax.yaml]"),
    ("extends_duplicate", "compose/duplicate_base.yaml:3:3: duplicate key 'epochs' (first defined on line 2) "
                          "[from compose/extends_duplicate.yaml]"),
    ("extends_list_base", "compose/list_base.yaml:1:1: the top level must be a mapping of sections, not a list "
                          "[from compose/extends_list_base.yaml]"),
])
def test_a_base_that_cannot_be_read_is_located_in_the_base(name, message):
    assert errors_of(f"compose/{name}.yaml") == [message]


def test_control_characters_are_refused_in_a_base(tmp_path):
    (tmp_path / "base.yaml").write_text("name: a\u202eb\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    assert errors_of(tmp_path / "child.yaml") == [
        f"{tmp_path}/base.yaml:1:8: control character U+202E in file; a spec is plain text [from {tmp_path}/child.yaml]"]


# --- provenance: every error names the file and line that set the value ----------------------

@pytest.mark.parametrize("name, message", [
    ("schema_error_in_base", "compose/bad_epochs_base.yaml:3:11: train.epochs: 0 is less than the minimum of 1 "
                             "[from compose/schema_error_in_base.yaml]"),
    ("rule_error_in_base", "compose/rule_base.yaml:6:9: data.train.stages[1].cache: cache after shuffle stores the "
                           "first epoch's order and replays it every epoch: put cache before shuffle "
                           "[from compose/rule_error_in_base.yaml]"),
    ("keras_error_in_base", "compose/keras_base.yaml:5:9: model.sequential.layers[0]: unknown layer 'Dens' "
                            "(did you mean 'Dense'?) [from compose/keras_error_in_base.yaml]"),
])
def test_errors_in_a_base_point_at_the_base(name, message):
    assert errors_of(f"compose/{name}.yaml") == [message]


def test_the_callback_path_rule_runs_even_with_schema_errors():
    assert errors_of("compose/callback_path_with_schema_error.yaml") == [
        "compose/callback_path_with_schema_error.yaml:4:11: train.epochs: 0 is less than the minimum of 1",
        "compose/callback_path_with_schema_error.yaml:6:29: train.callbacks[0].CSVLogger.filename: '/tmp/log.csv' is "
        "an absolute path: a spec writes only inside its run directory; give a path relative to it, such as "
        "'logs/train.csv'"]


def test_an_overridden_mistake_is_gone():
    assert load_spec("compose/overrides_bad_base.yaml").doc["train"]["epochs"] == 3


def test_json_and_github_reports_name_the_spec_given():
    result = cli.invoke(app, ["validate", "--format", "json", "compose/schema_error_in_base.yaml"])
    assert result.exit_code == 1
    assert yaml.safe_load(result.stdout) == [{
        "file": "compose/bad_epochs_base.yaml", "line": 3, "column": 11, "path": "train.epochs",
        "message": "0 is less than the minimum of 1", "spec": "compose/schema_error_in_base.yaml"}]
    result = cli.invoke(app, ["validate", "--format", "github", "compose/schema_error_in_base.yaml"])
    assert result.stdout == ("::error file=compose/bad_epochs_base.yaml,line=3,col=11::train.epochs: 0 is less than "
                             "the minimum of 1 [from compose/schema_error_in_base.yaml]\n")


def test_reports_escape_what_a_file_name_holds(tmp_path):
    folder = tmp_path / "50%,a:b"
    folder.mkdir()
    (folder / "x\ny.yaml").write_text("name: x\nversion: 1\n")
    file = str(folder / "x\ny.yaml")
    result = cli.invoke(app, ["validate", "--format", "github", file])
    escaped = str(tmp_path).replace(":", "%3A").replace(",", "%2C")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"::error file={escaped}/50%25%2Ca%3Ab/x\\ny.yaml,line=1,col=1::missing required section 'data'")
    result = cli.invoke(app, ["validate", file])
    assert result.stdout.splitlines()[0] == f"{tmp_path}/50%,a:b/x\\ny.yaml:1:1: missing required section 'data'"
    assert len(result.stdout.splitlines()) == 3  # data, model, train: one line each


# --- the command line ------------------------------------------------------------------------

def test_validate_checks_each_file_alone_unless_layered():
    result = cli.invoke(app, ["validate", "compose/regression.yaml", "compose/lr.yaml"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "2 specs valid\n", "")
    result = cli.invoke(app, ["validate", "compose/regression.yaml", "compose/layer_epochs.yaml"])
    assert result.exit_code == 1 and "compose/layer_epochs.yaml:1:1: missing required section 'data'" in result.stdout
    result = cli.invoke(app, ["validate", "--layered", "compose/regression.yaml", "compose/layer_epochs.yaml"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "1 spec valid\n", "")


def test_validate_resolved_prints_the_merged_spec_with_where_each_line_came_from():
    result = cli.invoke(app, ["validate", "--resolved", "compose/lr.yaml", "--set", "train.epochs=3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "# compose/lr.yaml"
    assert "  epochs: 3  # --set train.epochs=3" in lines
    assert "      learning_rate: 0.1  # compose/lr.yaml:4" in lines
    assert "      momentum: 0.5  # compose/train.yaml:5" in lines
    assert "      - shuffle:  # compose/data.yaml:10" in lines
    assert "name: lr  # compose/lr.yaml:2" in lines
    assert yaml.safe_load(result.stdout) == load_spec("compose/lr.yaml", ["train.epochs=3"]).doc


def test_validate_resolved_in_json_is_one_json_document():
    result = cli.invoke(app, ["validate", "--resolved", "--format", "json", "compose/lr.yaml",
                              "compose/null_misspelt.yaml"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert [r["files"] for r in out["resolved"]] == [["compose/lr.yaml"]]
    assert out["resolved"][0]["spec"] == load_spec("compose/lr.yaml").doc
    assert [e["path"] for e in out["errors"]] == ["train.metrcs"]
    result = cli.invoke(app, ["validate", "--resolved", "--format", "json", "compose/lr.yaml"])
    assert result.exit_code == 0 and json.loads(result.stdout)["errors"] == []


def test_resolved_text_reads_back_for_every_composed_example():
    for name in ("regression", "chain", "references", "diamond", "reference_metadata", "stages"):
        spec = load_spec(f"compose/{name}.yaml")
        assert yaml.safe_load(resolved_text(spec)) == spec.doc, name
    spec = load_spec("compose/regression.yaml", ['description="two\\nlines # not a comment\\ttab"'])
    assert spec.doc["description"] == "two\nlines # not a comment\ttab"
    assert yaml.safe_load(resolved_text(spec)) == spec.doc
    assert len(resolved_text(spec).splitlines()) == len(resolved_text(load_spec("compose/regression.yaml")).splitlines()) + 1


def test_bases_are_parsed_once_per_call(monkeypatch, tmp_path):
    parts = ", ".join(str(TESTS / "compose" / f"{name}.yaml") for name in ("data", "model", "train"))
    (tmp_path / "base.yaml").write_text(f"extends: [{parts}]\nname: base\n")
    children = []
    for i in range(50):
        children.append(tmp_path / f"child{i}.yaml")
        children[-1].write_text(f"extends: base.yaml\nname: child{i}\n")
    compose_module.clear_cache()
    parsed = []
    real = yamlfile.parse
    monkeypatch.setattr(yamlfile, "parse", lambda text, file=None: parsed.append(file) or real(text, file))
    result = cli.invoke(app, ["validate", *map(str, children)])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "50 specs valid\n", "")
    assert len(parsed) == 50 + 4  # each child, then the base and its three parts once


def test_validate_of_composed_specs_never_imports_tensorflow():
    code = ("import sys; from runner.cli import app\n"
            "try: app(['validate', '--resolved', *sys.argv[1:]])\n"
            "except SystemExit as e: code = e.code\n"
            "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code, "compose/chain.yaml", "compose/references.yaml"],
                            capture_output=True, text=True, cwd=TESTS, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


# --- the schema an editor uses for a part of a spec ------------------------------------------

def test_the_partial_schema_file_is_the_generated_one():
    from runner.spec.schema import load_schema, partial_schema

    assert json.loads((REPO / "schemas" / "pipeline.partial.schema.json").read_text()) == partial_schema(load_schema())
    result = cli.invoke(app, ["schema", "--partial"])
    assert json.loads(result.stdout) == partial_schema(load_schema())


def test_an_editor_checks_what_a_part_writes_but_not_what_it_leaves_out():
    import jsonschema

    from runner.spec.schema import load_schema, partial_schema

    full, partial = (jsonschema.Draft202012Validator(s) for s in (load_schema(), partial_schema(load_schema())))
    child = yamlfile.parse((REPO / "specs" / "fashion_mnist_cnn.yaml").read_text()).data
    assert "'source' is a required property" in [e.message for e in full.iter_errors(child)]  # data.train
    assert list(partial.iter_errors(child)) == []
    wrong = {"extends": "base.yaml", "train": {"epochs": 0, "optimiser": "adam"}}
    assert sorted(e.message for e in partial.iter_errors(wrong)) == [
        "0 is less than the minimum of 1", "Additional properties are not allowed ('optimiser' was unexpected)"]
    assert [e.message for e in full.iter_errors({"name": "x", "extends": "base.yaml"})] == []  # top level: optional


def test_example_specs_share_the_fashion_mnist_base():
    for name in ("fashion_mnist_cnn", "fashion_mnist_convnet"):
        spec = load_spec(REPO / "specs" / f"{name}.yaml")
        assert REPO / "specs" / "base" / "fashion_mnist_data.yaml" in spec.sources
        assert spec.doc["data"]["test"]["source"]["idx"]["labels"] == (
            "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")


def test_run_and_plan_layer_their_files_and_stop_at_a_spec_error_without_tensorflow():
    code = ("import sys; from runner.cli import app\n"
            "try: app([sys.argv[1], 'compose/regression.yaml', 'compose/layer_bad.yaml'])\n"
            "except SystemExit as e: print('exit', e.code, 'tensorflow' in sys.modules)")
    for command in ("run", "plan"):
        result = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, cwd=TESTS,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.stdout == "exit 1 False\n", result.stderr
        assert result.stderr.splitlines()[-1] == ("compose/layer_bad.yaml:2:11: train.epochs: -1 is less than the "
                                                  "minimum of 1 [from compose/regression.yaml + compose/layer_bad.yaml]")


def test_an_interrupted_layered_run_says_how_to_resume_with_every_file():
    from pathlib import Path

    import signal

    from runner.commands.run import command_line
    from runner.run.interrupts import RunInterrupted

    error = RunInterrupted(signal.SIGTERM)
    error.run_dir, error.epochs_done, error.resume_from = "runs/x/1", 2, "runs/x/1"
    error.command_line = command_line([Path("base.yaml"), Path("experiment.yaml")], ["train.epochs=3"], False)
    text = error.report("run")
    assert text.splitlines()[-1] == ("resume with: pipe run base.yaml experiment.yaml --set train.epochs=3 "
                                     "--resume runs/x/1")


def test_libyaml_and_the_python_reader_read_the_same_values_and_marks(monkeypatch):
    if yamlfile._FastComposer is None:
        pytest.skip("PyYAML without libyaml: only the Python reader")
    files = [*sorted((REPO / "specs").rglob("*.yaml")), *sorted((TESTS / "compose").rglob("*.yaml")),
             *sorted((TESTS / "hostile").rglob("*.yaml"))]
    texts = [f.read_text(errors="replace") for f in files] + ["a: {éé€😀: 1, b: 2}\n\"ü\": [x, \"y😀\", z]\n"]

    def read(text):
        try:
            document = yamlfile.parse(text)
            return document.data, document.key_marks, document.value_marks, document.count
        except SpecError as e:
            return str(e)

    fast = [read(text) for text in texts]
    monkeypatch.setattr(yamlfile, "_FastComposer", None)
    assert [read(text) for text in texts] == fast


def test_resolved_prints_each_spec_as_its_own_document():
    result = cli.invoke(app, ["validate", "--resolved", "compose/regression.yaml", "compose/lr.yaml"])
    documents = list(yaml.safe_load_all(result.stdout))
    assert [d["name"] for d in documents] == ["regression", "lr"]
    assert result.stdout.startswith("# compose/regression.yaml\n") and "---\n# compose/lr.yaml\n" in result.stdout
    result = cli.invoke(app, ["validate", "--layered", "--resolved", "compose/lr.yaml", "compose/layer_epochs.yaml"])
    assert result.stdout.startswith("# compose/lr.yaml + compose/layer_epochs.yaml\n")
    assert "  epochs: 7  # compose/layer_epochs.yaml:2" in result.stdout.splitlines()


@pytest.mark.slow
def test_plan_blames_the_input_shape_where_it_was_written_as_run_does():
    result = cli.invoke(app, ["plan", "compose/misfit.yaml"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        "compose/misfit_base.yaml:5:5: model.sequential.input_shape: data.train does not fit the model's input: it "
        "gives (16, 1) float32; the model takes (batch, 2) float32: ")
    assert result.stderr.splitlines()[-1].endswith(" [from compose/misfit.yaml]")
    result = cli.invoke(app, ["plan", "compose/misfit.yaml", "--set", "model.sequential.input_shape=[3]"])
    assert result.stderr.splitlines()[-1].startswith(
        "--set model.sequential.input_shape=[3]: model.sequential.input_shape: data.train does not fit")


def test_copies_of_long_source_names_are_cut_with_a_hash_and_stay_apart():
    from types import SimpleNamespace

    from runner.outputs.files import source_copies

    long_a, long_b = "b" * 246 + "a.yaml", "b" * 246 + "c.yaml"
    names = list(source_copies(SimpleNamespace(sources=["spec.yaml", long_a, long_b])))
    assert names[0] == "sources/1-spec.yaml"
    assert all(len(n.split("/")[1]) <= 80 and n.endswith(".yaml") for n in names)
    assert names[1].startswith("sources/2-" + "b" * 60 + "-") and names[1] != names[2].replace("3-", "2-")


def test_resolved_json_is_strict_and_an_invalid_spec_that_merged_is_printed_before_its_errors():
    result = cli.invoke(app, ["validate", "--resolved", "--format", "json", "compose/infinite.yaml"])
    assert result.exit_code == 1 and "Infinity" not in result.stdout and "NaN" not in result.stdout
    out = json.loads(result.stdout)
    assert out["resolved"][0]["spec"]["train"]["optimizer"]["SGD"] == {
        "learning_rate": 0.05, "momentum": 0.5, "clipvalue": ".inf", "global_clipnorm": ".nan"}
    assert [e["path"] for e in out["errors"]] == ["train.epochs", "train.optimizer.SGD.global_clipnorm",
                                                  "train.optimizer.SGD.global_clipnorm"]  # both, and .nan
    result = cli.invoke(app, ["validate", "--resolved", "compose/infinite.yaml"])
    lines = result.stdout.splitlines()
    assert (result.exit_code, lines[0], lines[-3]) == (1, "# compose/infinite.yaml", "compose/infinite.yaml:5:11: "
                                                       "train.epochs: 0 is less than the minimum of 1")
    assert "      clipvalue: .inf  # compose/infinite.yaml:6" in lines


def test_exactly_one_of_after_a_merge_says_where_each_key_came_from():
    assert errors_of("compose/two_sources.yaml") == [
        "compose/two_sources.yaml:6:5: data.train.source: expected exactly one of: tfds, idx, csv, npz, npy, "
        "tfrecord, synthetic, image_folder, text_folder; got 'synthetic' (compose/data.yaml:6) and 'csv' "
        "(compose/two_sources.yaml:7) (the files merge key by key: 'synthetic: null' in the later file removes "
        "the base's)"]
    assert errors_of("compose/regression.yaml", ["data.train.source.csv={path: a.csv}"])[0].endswith(
        "got 'synthetic' (compose/data.yaml:6) and 'csv' (--set) (the files merge key by key: --set "
        "data.train.source.synthetic=null removes the base's) [from compose/regression.yaml]")
