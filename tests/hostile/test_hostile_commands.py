"""Hostile input to the commands around a run: `pipe runs`, `compare`, `init`, `validate`:
no traceback, escapes never reach the terminal, one bad run directory hides no other."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.outputs.records import MAX_JSON_BYTES
from runner.spec.errors import printable
from tests.spec.test_spec import MINIMAL

ESC = "\x1b"
OSC_TITLE = f"{ESC}]0;owned\x07"
CLEAR = f"{ESC}[2J"


def _run(base, name, stamp, manifest, metrics=None, spec="version: 1\n"):
    path = base / name / stamp
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    if metrics is not None:
        (path / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    (path / "spec.yaml").write_text(spec)
    return path


GOOD = {"name": "good", "status": "completed", "start_time": "2026-12-06T01:00:00", "epochs_run": 3,
        "wall_time_s": 12.5}


@pytest.fixture
def runs(tmp_path):
    base = tmp_path / "runs"
    _run(base, "good", "20261206-010000", GOOD, {"test": {"loss": 0.25}})
    return base


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_printable_escapes_controls_and_reordering_characters():
    assert printable(f"a{OSC_TITLE}b\nc\u202ed\te") == "a\\x1b]0;owned\\x07b\\nc\\u202ed\\te"
    assert printable("plain text, ünïcode, 日本") == "plain text, ünïcode, 日本"


@pytest.mark.parametrize("manifest", [
    "[1, 2, 3]",  # a list
    "NaN",
    "{\"name\": " * 5000 + "1" + "}" * 5000,  # nested too deeply for Python's parser
    "not json at all",
    "\"a string\"",
])
def test_one_malformed_manifest_hides_no_other_run(runs, manifest):
    _run(runs, "bad", "20261206-020000", manifest)
    result = _invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert "good" in result.stdout and "test: loss=0.25" in result.stdout
    assert "pipe runs: skipped" in result.stderr and "bad" in result.stderr


@pytest.mark.parametrize("manifest", [
    {"name": ["x"], "status": {"a": 1}, "start_time": 5, "epochs_run": "many", "wall_time_s": "long"},
    {"name": "n", "status": "running", "pid": "not a pid", "host": "h", "start_time": None},
    {"name": "n", "status": "completed", "wall_time_s": float("nan"), "epochs_run": True},
    {"name": "n", "status": "completed", "wall_time_s": 1e308 * 10},
])
def test_wrong_types_in_a_manifest_are_shown_as_unknown_not_a_traceback(runs, manifest):
    _run(runs, "odd", "20261206-030000", json.dumps(manifest, allow_nan=True),
         {"test": {"loss": "low", "acc": [1]}, "train": [1]})
    result = _invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert "good" in result.stdout and "odd" in result.stdout
    json_result = _invoke("runs", runs, "--format", "json")
    assert json_result.exit_code == 0 and len(json.loads(json_result.stdout)) == 2


def test_a_manifest_too_large_to_be_pipe_s_is_skipped_unread(runs):
    path = _run(runs, "huge", "20261206-040000", "{}")
    with open(path / "manifest.json", "wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)  # sparse: no disk used
    result = _invoke("runs", runs)
    assert result.exit_code == 0 and "good" in result.stdout
    assert f"more than a run's file holds ({MAX_JSON_BYTES}); not read" in result.stderr


def test_runs_and_compare_print_no_escape_from_manifests_metrics_or_names(runs):
    evil = {**GOOD, "status": f"completed{OSC_TITLE}", "start_time": CLEAR}
    other = _run(runs, f"name{ESC}[31m", "20261206-050000", evil, {f"test{ESC}]8;;http://x\x07": {f"loss{CLEAR}": 0.5},
                                                                     "test": {"acc\n forged": 1.0}},
                 spec=f"version: 1\nname: x{ESC}[2J\n")
    listed = _invoke("runs", runs)
    assert listed.exit_code == 0
    assert ESC not in listed.output and "\x07" not in listed.output
    assert "\\x1b]0;owned\\x07" in listed.stdout and "acc\\n forged=1" in listed.stdout
    compared = _invoke("compare", runs / "good" / "20261206-010000", other)
    assert compared.exit_code == 0, compared.output
    assert ESC not in compared.output and "\n forged" not in compared.output
    assert "name: x\\x1b[2J" in compared.stdout


def test_compare_on_a_malformed_run_directory_is_one_line_exit_1(runs):
    bad = _run(runs, "bad", "20261206-020000", "[1]")
    result = _invoke("compare", runs / "good" / "20261206-010000", bad)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == f"pipe compare: {bad / 'manifest.json'}: not a JSON object"


def test_compare_shows_numbers_differences_only_between_numbers(runs):
    other = _run(runs, "other", "20261206-060000", GOOD, {"test": {"loss": "0.5"}})
    result = _invoke("compare", runs / "good" / "20261206-010000", other)
    assert result.exit_code == 0, result.output
    assert "test.loss" in result.stdout


@pytest.mark.parametrize("name", ["spec\nforged.yaml:1:1: name: all good", f"spec{ESC}]0;owned\x07.yaml",
                                  "spec\u202egnp.yaml"])
@pytest.mark.parametrize("fmt", ["text", "github", "json"])
def test_validate_escapes_a_spec_file_name_in_every_format(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_text(MINIMAL.replace("name: tiny", "name: '..'"))
    result = _invoke("validate", "--format", fmt, path)
    assert result.exit_code == 1
    assert ESC not in result.output and "\u202e" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    if fmt == "text":
        assert len(lines) == 1 and "forged.yaml:1:1" not in lines[0].split("\\n")[0]
    elif fmt == "github":
        assert len(lines) == 1 and lines[0].startswith("::error file=")
    else:
        (error,) = json.loads(result.stdout)
        assert error["file"] == str(path)  # JSON carries the name exactly, escaped by JSON itself


def test_init_into_a_folder_that_cannot_exist_is_a_clear_error(tmp_path):
    result = _invoke("init", "regression", "/proc/nope/spec.yaml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("pipe init: cannot write /proc/nope")


def test_init_through_a_file_in_the_way_says_so(tmp_path):
    (tmp_path / "file").write_text("x")
    result = _invoke("init", "regression", tmp_path / "file" / "spec.yaml")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"pipe init: cannot write {tmp_path / 'file'}: a file is in the way, not a folder"
