"""What pipe writes for others to read (issue 22): no class from probabilities that are not
numbers, strict JSON on stdout, and exit 2 for a path that is not there."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from runner.cli import app
from runner.outputs.prediction_files import classes, write_predictions

MULTICLASS = {"kind": "multiclass", "from_logits": False}


def test_a_row_with_nan_probabilities_has_no_class():
    outputs = np.array([[0.1, 0.9], [np.nan, np.nan], [0.7, 0.3]], dtype=np.float32)
    assert classes(outputs, MULTICLASS).tolist() == [1, -1, 0]
    logits = np.array([[np.inf, 0.0], [1.0, 2.0]], dtype=np.float32)
    assert classes(logits, {"kind": "multiclass", "from_logits": True}).tolist() == [-1, 1]
    binary = np.array([[np.nan], [0.8]], dtype=np.float32)
    assert classes(binary, {"kind": "binary", "from_logits": False}).tolist() == [-1, 1]


def test_prediction_files_leave_the_class_empty_and_write_strict_json(tmp_path):
    outputs = {None: np.array([[0.1, 0.9], [np.nan, np.nan]], dtype=np.float32)}
    write_predictions(tmp_path / "p.csv", outputs, {None: MULTICLASS}, class_names=["A", "B"])
    assert (tmp_path / "p.csv").read_text().splitlines()[1:] == [
        "1,B,0.10000000149011612,0.8999999761581421", ",,nan,nan"]
    write_predictions(tmp_path / "p.jsonl", outputs, {None: MULTICLASS}, class_names=["A", "B"])
    second = (tmp_path / "p.jsonl").read_text().splitlines()[1]
    assert json.loads(second, parse_constant=lambda c: 1 / 0) == {
        "class": None, "class_name": None, "probabilities": [None, None]}


def test_runs_json_is_strict(tmp_path):
    run = tmp_path / "runs" / "r" / "20261206-010000"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"name": "r", "status": "completed"}))
    (run / "metrics.json").write_text('{"test": {"loss": Infinity, "accuracy": 0.5}}')
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "runs"), "--format", "json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout, parse_constant=lambda c: 1 / 0)
    assert row["metrics"] == {"loss": None, "accuracy": 0.5}


def test_runs_of_a_missing_directory_is_a_usage_mistake(tmp_path):
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "nonexist")])
    assert result.exit_code == 2
    assert result.output.strip() == f"pipe runs: no such directory: {tmp_path / 'nonexist'}"


def test_usage_mistakes_of_the_run_directory_commands_exit_2_before_tensorflow(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (tmp_path / "x.npy").write_bytes(b"")
    cases = [
        (["predict", str(run), str(tmp_path / "x.npy"), "--output", str(tmp_path / "x.json")],
         f"pipe predict: --output {tmp_path / 'x.json'}: unknown output format '.json' (use .csv, .npy, .jsonl)"),
        (["predict", str(run), str(tmp_path / "x.npy"), "--output", str(tmp_path / "nodir" / "x.csv")],
         f"pipe predict: --output {tmp_path / 'nodir' / 'x.csv'}: the folder {tmp_path / 'nodir'} does not exist"),
        (["predict", str(tmp_path), str(tmp_path / "x.npy"), "--output", str(tmp_path / "x.csv")],
         f"pipe predict: {tmp_path}: not a run directory (no manifest.json)"),
        (["evaluate", str(tmp_path)], f"pipe evaluate: {tmp_path}: not a run directory (no manifest.json)"),
        (["compare", str(run), str(tmp_path)], f"pipe compare: {tmp_path}: not a run directory (no manifest.json)"),
        (["runs", str(tmp_path / "x.npy")], f"pipe runs: not a directory: {tmp_path / 'x.npy'}"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, args)
        assert (result.exit_code, result.output.strip()) == (2, message)


def test_file_and_class_names_in_a_predictions_csv_are_escaped(tmp_path):
    outputs = {None: np.array([[0.1, 0.9]], dtype=np.float32)}
    write_predictions(tmp_path / "p.csv", outputs, {None: MULTICLASS}, class_names=["A", "B\x1b[31m"],
                      files=["\x1b]0;title\x07x.png\u202egnp"])
    text = (tmp_path / "p.csv").read_text()
    assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    assert text.splitlines()[1].startswith("\\x1b]0;title\\x07x.png\\u202egnp,1,B\\x1b[31m,")


def test_the_init_hint_names_a_file_with_control_characters_exactly(tmp_path):
    import shutil
    import subprocess

    from runner.commands.init import shell_word

    assert shell_word("specs/my spec.yaml") == "'specs/my spec.yaml'"
    name = "a\x1b[31mb'c\\d\u202e.yaml"
    word = shell_word(name)
    assert word == "$'a\\x1b[31mb\\'c\\\\d\\u202e.yaml'" and "\x1b" not in word
    if shutil.which("bash"):
        echoed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True,
                                env={"LC_ALL": "C.UTF-8"}).stdout
        assert echoed.decode("utf-8") == name


def test_an_unknown_export_format_or_quantization_is_a_usage_mistake(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "pickle"])
    assert (result.exit_code, result.output.strip()) == (
        2, "pipe export: unknown format 'pickle' (use saved_model, tflite, onnx)")
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", "tflite", "--quantize", "int16"])
    assert (result.exit_code, result.output.strip()) == (2, "pipe export: unknown quantization 'int16' (use float16, int8)")
