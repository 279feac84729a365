"""The corpus of mistaken specs: each is caught before training, by the command it names.

Every file under tests/mistakes/ starts with

    # caught-by: validate      (or plan: the mistake needs data or tensors to be seen)
    # expect: <a fragment of the error message>

`validate` files must fail `pipe validate` (no TensorFlow) with that message; `plan` files
must pass it (so the mapping is exact) and are checked by `pipe plan` in test_plan.py.
No file is left for `pipe run` to find.
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from conftest import REPO
from runner.cli import app
from runner.spec import SpecError, load_spec

MISTAKES = sorted((REPO / "tests" / "mistakes").glob("*.yaml"))


def declared(path):
    """(command, expected fragment) declared in a corpus file's header."""
    text = path.read_text()
    command = re.search(r"^# caught-by: (validate|plan)$", text, re.M)
    expect = re.search(r"^# expect: (.+)$", text, re.M)
    assert command and expect, f"{path.name} must declare '# caught-by:' and '# expect:'"
    return command.group(1), expect.group(1)


def validate_errors(path) -> list[str]:
    try:
        load_spec(path)
    except SpecError as e:
        return [str(x) for x in getattr(e, "errors", [e])]
    return []


def test_the_corpus_is_large_and_covers_both_commands():
    commands = [declared(p)[0] for p in MISTAKES]
    assert len(MISTAKES) >= 40
    assert commands.count("validate") >= 40 and commands.count("plan") >= 8


@pytest.mark.parametrize("path", MISTAKES, ids=[p.stem for p in MISTAKES])
def test_each_mistake_is_caught_by_the_command_it_declares(path):
    command, expect = declared(path)
    errors = validate_errors(path)
    if command == "validate":
        assert any(expect in e for e in errors), errors
        assert all(e.startswith(f"{path}:") and re.match(r".*:\d+:\d+: ", e) for e in errors), errors
    else:
        assert errors == [], f"validate already catches it; declare 'caught-by: validate': {errors}"


def test_validate_reports_every_mistake_of_a_file_sorted_by_line(write_spec):
    path = write_spec(
        """\
version: 1
name: many
data:
  train:
    source: {synthetic: {x: {linspace: {start: 0, stop: 1, num: 8}}, y: {linear: {w: 1, b: 0}}}}
    stages: [{repeat: {}}, {batch: {batch_size: 4}}]
model:
  sequential:
    layers:
      - Dens: {units: 4}
      - Dense: {units: 1, activaton: relu}
train:
  epochs: ten
  loss: msee
  optimizer: {Adam: {lr: 0.1}}
  optimzer: adam
"""
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:6:15: data.train.stages[0].repeat: repeat without a count makes the train split endless "
        "and the run would hang: give repeat a count, or set train.steps_per_epoch",
        f"{path}:10:9: model.sequential.layers[0]: unknown layer 'Dens' (did you mean 'Dense'?)",
        f"{path}:11:27: model.sequential.layers[1].Dense.activaton: unknown argument 'activaton' of Dense "
        "(did you mean 'activation'?)",
        f"{path}:13:11: train.epochs: expected an integer, got string 'ten'",
        f"{path}:14:9: train.loss: unknown loss 'msee' (did you mean 'mse'?)",
        f"{path}:15:22: train.optimizer.Adam.lr: unknown argument 'lr' of Adam",
        f"{path}:16:3: train.optimzer: unknown key 'optimzer' (did you mean 'optimizer'?)",
    ]


def test_json_and_github_formats_carry_every_error():
    path = next(p for p in MISTAKES if "layer_argument_typo" in p.name)
    result = CliRunner().invoke(app, ["validate", "--format", "json", str(path)])
    assert result.exit_code == 1
    (error,) = json.loads(result.output)
    assert error["path"] == "model.sequential.layers[0].Dense.activaton"
    assert error["message"] == "unknown argument 'activaton' of Dense (did you mean 'activation'?)"
    result = CliRunner().invoke(app, ["validate", "--format", "github", str(path)])
    assert result.output.startswith(f"::error file={path},line={error['line']},col={error['column']}::")


def test_example_specs_have_no_mistakes():
    for path in sorted((REPO / "specs").glob("*.yaml")):
        assert validate_errors(path) == [], path
