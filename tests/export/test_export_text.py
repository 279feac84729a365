"""Exporting a model that reads raw text (TextVectorization), and a quiet console while exporting.

The SavedModel holds the vectorizer's lookup table and serves raw strings as `pipe predict`
does; tflite and onnx cannot hold its string ops and are refused in one line before
converting (by `pipe export`, and by `pipe validate` for `outputs.export`). TensorFlow's,
absl's and tf2onnx's Python logging goes to the run's tensorflow.log, not the console.

Tiny runs: a few dozen short texts or rows, one epoch, trained once per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from runner.cli import app

REPO = Path(__file__).parents[2]

TEXT = """version: 1
name: text
seed: 1
data:
  train:
    source: {text_folder: {directory: texts}}
    stages: [{batch: {batch_size: 8}}]
  validation: {fraction: 0.25}
model:
  functional:
    inputs: {text: {shape: [], dtype: string}}
    layers:
      - {name: vectorize, inputs: text, layer: {TextVectorization: {max_tokens: 30, output_sequence_length: 6}}}
      - {name: embedding, inputs: vectorize, layer: {Embedding: {input_dim: 30, output_dim: 4}}}
      - {name: average, inputs: embedding, layer: GlobalAveragePooling1D}
      - {name: logits, inputs: average, layer: {Dense: {units: 2}}}
    outputs: logits
train:
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.05}}
outputs: {plots: {enabled: false}, export: [saved_model]}
"""

# A categorical one-hot column and a Normalization layer: the tables and shapes that make
# TensorFlow's SavedModel writer and tf2onnx log warnings.
TABLE = """version: 1
name: table
seed: 3
data:
  train:
    source:
      csv: {path: table.csv, header: true, label: cls, features: [a, b, color],
            categorical: {color: one_hot}, fill: {a: mean}}
    stages: [{batch: {batch_size: 16}}]
  validation: {fraction: 0.25}
model:
  sequential:
    layers:
      - Normalization: {axis: -1}
      - Dense: {units: 2}
train:
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
outputs: {plots: {enabled: false}}
"""

_WORDS = {"pos": ["great", "lovely", "fine", "best", "good"], "neg": ["awful", "bad", "worst", "dull", "poor"]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("export_text")
    rng = np.random.default_rng(0)
    for label, words in _WORDS.items():
        (base / "texts" / label).mkdir(parents=True)
        for i in range(16):
            text = " ".join(rng.choice(words + ["the", "film", "was", "a"], 5))
            (base / "texts" / label / f"{i}.txt").write_text(text.capitalize() + ".", encoding="utf-8")
    rows = ["a,b,color,cls"] + [f"{'' if i % 7 == 0 else f'{rng.random():.3f}'},{rng.normal(50, 9):.2f},"
                                f"{['red', 'green', 'blue'][i % 3]},{i % 2}" for i in range(48)]
    (base / "table.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (base / "text.yaml").write_text(TEXT, encoding="utf-8")
    (base / "table.yaml").write_text(TABLE, encoding="utf-8")
    return base


def _pipe(folder: Path, *args) -> subprocess.CompletedProcess:
    """pipe in a fresh process, as a user runs it: what it prints on the console."""
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=folder, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=900)


def _only_run(folder: Path, name: str) -> Path:
    (run,) = sorted((folder / "runs" / name).glob("*"))
    return run


@pytest.fixture(scope="module")
def text_run(folder) -> Path:
    done = _pipe(folder, "run", "-q", "text.yaml", "--set", f"outputs.dir={folder / 'runs'}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "", done.stderr  # the saved_model of outputs.export said nothing either
    return _only_run(folder, "text")


@pytest.fixture(scope="module")
def table_run(folder) -> Path:
    """Trained with every export format at the end of the run: the console stays pipe's."""
    done = _pipe(folder, "run", "-q", "table.yaml", "--set", f"outputs.dir={folder / 'runs'}",
                 "--set", "outputs.export=[saved_model, tflite, onnx]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "", done.stderr
    return _only_run(folder, "table")


@pytest.mark.slow
def test_outputs_export_writes_the_text_model_s_saved_model(text_run):
    exports = json.loads((text_run / "manifest.json").read_text())["exports"]
    assert [e["format"] for e in exports] == ["saved_model"]
    assert (text_run / exports[0]["path"] / "saved_model.pb").is_file()


@pytest.mark.slow
def test_the_text_saved_model_serves_raw_strings_as_pipe_predict(folder, text_run, tmp_path):
    import tensorflow as tf

    done = _pipe(folder, "export", text_run, "--format", "saved_model", "--output", tmp_path / "sm")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    texts = ["The best film, a lovely one.", "Awful and dull: the worst.", "words it never saw"]
    (tmp_path / "q").mkdir()
    for i, text in enumerate(texts):
        (tmp_path / "q" / f"{i}.txt").write_text(text, encoding="utf-8")
    predicted = CliRunner().invoke(app, ["predict", str(text_run), str(tmp_path / "q"), "-o", str(tmp_path / "p.jsonl")])
    assert predicted.exit_code == 0, predicted.output
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    serve = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    got = serve(features=tf.constant([(tmp_path / "q" / r["file"]).read_text() for r in rows]))
    np.testing.assert_allclose(got["probabilities"].numpy(), [r["probabilities"] for r in rows], rtol=1e-5, atol=1e-6)
    assert [c.decode() for c in got["class_name"].numpy()] == [r["class_name"] for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("fmt, ops", [("tflite", "StringLower, StaticRegexReplace, StringSplitV2, LookupTableFindV2"),
                                      ("onnx", "StaticRegexReplace, StringSplitV2")])
def test_tflite_and_onnx_refuse_the_text_model_before_converting(folder, text_run, fmt, ops, tmp_path):
    log = (text_run / "tensorflow.log").read_text()
    done = _pipe(folder, "export", text_run, "--format", fmt, "--output", tmp_path / "out")
    assert done.returncode == 1, done.stderr[-3000:]
    assert (text_run / "tensorflow.log").read_text() == log  # a refused export leaves the run as it was
    assert done.stderr == (f"pipe export: {fmt} cannot hold TextVectorization 'vectorize' (string ops {ops}); "
                           "export saved_model instead\n")
    assert list(tmp_path.iterdir()) == []


def test_validate_refuses_tflite_and_onnx_in_outputs_export_of_a_text_model(tmp_path):
    (tmp_path / "texts").mkdir()
    (tmp_path / "text.yaml").write_text(TEXT.replace("export: [saved_model]", "export: [saved_model, tflite, onnx]"))
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "text.yaml")])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "outputs.export" in line]
    assert [line.split(": ", 2)[1:] for line in lines] == [
        ["outputs.export[1]", "tflite cannot hold TextVectorization 'vectorize' (model.functional.layers[0].layer): "
         "its string ops (regex, split) are not among LiteRT's builtin ops; export saved_model instead"],
        ["outputs.export[2]", "onnx cannot hold TextVectorization 'vectorize' (model.functional.layers[0].layer): "
         "its string ops (regex, split) are not among ONNX Runtime's standard ops; export saved_model instead"]]
    (tmp_path / "text.yaml").write_text(TEXT)
    assert CliRunner().invoke(app, ["validate", str(tmp_path / "text.yaml")]).exit_code == 0


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "saved_model"])
def test_export_says_only_pipe_s_line_and_the_run_keeps_the_libraries_log(folder, table_run, fmt):
    before = (table_run / "tensorflow.log").read_text()
    done = _pipe(folder, "export", table_run, "--format", fmt)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    assert done.stdout.startswith(f"exported: {table_run}/export/") and done.stdout.count("\n") == 1
    log = (table_run / "tensorflow.log").read_text()
    assert log.startswith(before) and len(log) > len(before)
    if fmt == "onnx":  # tf2onnx's warnings are kept, with the logger's name
        assert "WARNING:tf2onnx" in log[len(before):] or "WARNING:tensorflow" in log[len(before):]


@pytest.mark.slow
def test_verbose_export_prints_the_libraries_log(folder, table_run):
    done = _pipe(folder, "export", table_run, "--format", "saved_model", "--verbose")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr != ""
