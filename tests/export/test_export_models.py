"""`pipe export` of ordinary models beyond the reference specs: random layers, several NPZ
inputs with a test fraction, class and column names in any language; and where it may write.

Tiny runs (one or two epochs on a few hundred rows), trained once per module; each exported
file is run by tests/export/serve_exported.py, which never imports pipe.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")

from runner.cli import app  # noqa: E402
from runner.export.write import export_run  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.spec import SpecError, load_spec  # noqa: E402

SERVE = Path(__file__).parent / "serve_exported.py"

AUGMENTED = """version: 1
name: aug
seed: 3
data:
  train:
    source: {npz: {path: img.npz, features: x, label: y}}
    stages: [{batch: {batch_size: 16}}]
  validation: {fraction: 0.25}
model:
  sequential:
    input_shape: [8, 8, 1]
    layers:
      - RandomFlip: {mode: horizontal}
      - RandomRotation: {factor: 0.2}
      - Dropout: {rate: 0.5}
      - Flatten: {}
      - Dense: {units: 1}
train:
  epochs: 1
  loss: {BinaryCrossentropy: {from_logits: true}}
  optimizer: adam
outputs: {plots: {enabled: false}}
"""

TWO_INPUTS = """version: 1
name: two_inputs
seed: 3
data:
  train:
    source: {npz: {path: two.npz, features: [a, b], label: t}}
    stages: [{batch: {batch_size: 16}}]
  test: {fraction: 0.25}
model:
  functional:
    inputs: {a: {shape: [4]}, b: {shape: [2]}}
    layers:
      - {name: cat, layer: Concatenate, inputs: [a, b]}
      - {name: h, layer: {Dense: {units: 8, activation: relu}}, inputs: cat}
      - {name: out, layer: {Dense: {units: 2}}, inputs: h}
    outputs: out
train:
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
outputs: {plots: {enabled: false}}
"""

UNICODE = """version: 1
name: unicode
seed: 1
data:
  train:
    source: {csv: {path: drinks.csv, header: true, label: drink}}
    stages: [{batch: {batch_size: 16}}]
  validation: {fraction: 0.25}
model:
  sequential:
    layers: [{Dense: {units: "${data.num_classes}"}}]
train:
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
outputs: {plots: {enabled: false}}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("export_models")
    rng = np.random.default_rng(0)
    np.savez(base / "img.npz", x=rng.random((64, 8, 8, 1), dtype=np.float32),
             y=rng.integers(0, 2, (64, 1)).astype(np.float32))
    np.savez(base / "two.npz", a=rng.normal(size=(80, 4)).astype(np.float32),
             b=rng.normal(size=(80, 2)).astype(np.float32), t=rng.integers(0, 2, 80).astype(np.int32))
    rows = ["größe,gr__e,drink"] + [f"{rng.random():.4f},{rng.random():.4f},{'café' if i % 2 else 'thé'}"
                                    for i in range(64)]
    (base / "drinks.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for name, text in (("aug", AUGMENTED), ("two_inputs", TWO_INPUTS), ("unicode", UNICODE)):
        (base / f"{name}.yaml").write_text(text, encoding="utf-8")
    return base


def _train(folder: Path, name: str) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        spec = load_spec(folder / f"{name}.yaml", [f"outputs.dir={folder / 'runs'}"])
        return run_spec(spec, quiet=True).run_dir


def _serve(fmt: str, path: Path, inputs: dict, tmp_path: Path) -> dict:
    np.savez(tmp_path / "inputs.npz", **inputs)
    out = tmp_path / f"outputs-{fmt}.npz"
    done = subprocess.run([sys.executable, str(SERVE), fmt, str(path), str(tmp_path / "inputs.npz"), str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as archive:
        return {k: archive[k] for k in archive.files}


def test_random_layers_are_off_in_the_exported_model(folder, tmp_path):
    """RandomFlip, RandomRotation and Dropout: their seed generators' state is saved with the
    model, and the exported function runs it in inference mode (the same output twice)."""
    run = _train(folder, "aug")
    x = np.load(folder / "img.npz")["x"][:16]
    outputs = _serve("saved_model", export_run(run, "saved_model", tmp_path / "sm").path, {"features": x}, tmp_path)
    assert outputs["__deterministic__"]
    import keras

    logits = keras.saving.load_model(run / "model.keras")(x, training=False).numpy()
    np.testing.assert_allclose(outputs["probabilities"], tf.sigmoid(logits).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["saved_model", "onnx"])
def test_several_npz_inputs_with_a_test_fraction(folder, fmt, tmp_path):
    """A test split drawn from train's source: the exported inputs are that source's."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    runs = sorted((folder / "runs" / "two_inputs").glob("*")) if (folder / "runs" / "two_inputs").is_dir() else []
    run = runs[-1] if runs else _train(folder, "two_inputs")
    data = np.load(folder / "two.npz")
    a, b = data["a"][:10], data["b"][:10]
    outputs = _serve(fmt, export_run(run, fmt, tmp_path / "m").path, {"a": a, "b": b}, tmp_path)
    import keras

    logits = keras.saving.load_model(run / "model.keras")({"a": a, "b": b}, training=False).numpy()
    np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-6)


def test_non_ascii_class_and_column_names(folder, tmp_path):
    """Class names `café`/`thé` come out as UTF-8; the column `größe` is the input `gr__e`
    (other characters '_'), and a column already named so the input `gr__e_2`."""
    run = _train(folder, "unicode")
    path = export_run(run, "saved_model", tmp_path / "sm").path
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert sorted(signature.structured_input_signature[1]) == ["gr__e", "gr__e_2"]
    outputs = _serve("saved_model", path, {"gr__e": np.float32([0.1, 0.9]), "gr__e_2": np.float32([0.5, 0.2])},
                     tmp_path)
    assert set(outputs["class_name"]) <= {"café", "thé"}
    assert list(outputs["class_name"]) == [["café", "thé"][i] for i in outputs["class"]]


def test_export_into_a_runs_own_folders_is_refused(folder, tmp_path):
    run = sorted((folder / "runs" / "unicode").glob("*"))[-1] if (folder / "runs" / "unicode").is_dir() \
        else _train(folder, "unicode")
    for inside in (run / "checkpoints" / "sm", run / "saved_model", run / "history.csv"):
        result = CliRunner().invoke(app, ["export", str(run), "--format", "saved_model", "--output", str(inside)])
        assert result.exit_code == 1, result.output
        first = inside.relative_to(run).parts[0]
        assert result.stderr == (f"pipe export: {inside}: would replace {first!r} of the run directory {run}, "
                                 "which pipe wrote: export elsewhere\n")
        assert not (run / "checkpoints" / "sm").exists()
    assert export_run(run, "saved_model", run / "export" / "mine").path.is_dir()  # its export/ is the place


def test_outputs_dir_inside_a_run_is_refused_by_validate_plan_and_run(folder, tmp_path):
    run = tmp_path / "runs" / "old" / "20990101-000000"
    (run / "checkpoints").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": "completed"}))
    (run / "spec.yaml").write_text("version: 1\n")
    shutil.copy(folder / "img.npz", tmp_path / "img.npz")
    (tmp_path / "aug.yaml").write_text(AUGMENTED)
    inside = run / "checkpoints"
    said = (f"--set outputs.dir={inside}: outputs.dir: outputs.dir '{inside}' is inside the run directory "
            f"{run}: write runs to a folder outside any run directory")
    for command in ("validate", "plan"):
        result = CliRunner().invoke(app, [command, str(tmp_path / "aug.yaml"), "--set", f"outputs.dir={inside}"])
        assert result.exit_code == 1, result.output
        assert said in result.output
    spec = load_spec(tmp_path / "aug.yaml", [f"outputs.dir={inside}"])
    with pytest.raises(SpecError) as caught:
        run_spec(spec, quiet=True)
    assert str(caught.value) == said
    assert sorted(p.name for p in inside.iterdir()) == []  # nothing written there


def test_an_unexpected_error_is_one_paragraph_naming_the_step(folder, monkeypatch):
    run = sorted((folder / "runs" / "unicode").glob("*"))[-1] if (folder / "runs" / "unicode").is_dir() \
        else _train(folder, "unicode")
    import runner.export.serving

    def broken(*args, **kwargs):
        raise KeyError("Failed to add concrete function\n  with internal text")

    monkeypatch.setattr(runner.export.serving, "build_serving", broken)
    result = CliRunner().invoke(app, ["export", str(run), "--format", "saved_model", "--output",
                                      str(folder / "never")])
    assert result.exit_code == 3
    assert result.stderr == ("pipe export: building the serving function (the run's preprocessing and model) "
                             "failed: KeyError: 'Failed to add concrete function\\n with internal text'\n")
    assert not (folder / "never").exists()


def test_non_ascii_column_names_export_with_a_quiet_console(folder, tmp_path):
    """`pipe export` in a fresh process: the one result line, no TensorFlow warning about names."""
    run = sorted((folder / "runs" / "unicode").glob("*"))[-1] if (folder / "runs" / "unicode").is_dir() \
        else _train(folder, "unicode")
    done = subprocess.run([sys.executable, "-m", "runner.cli", "export", str(run), "--format", "saved_model",
                           "--output", str(tmp_path / "sm")], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith(f"exported: {tmp_path / 'sm'} (saved_model, sha256 ")
    assert "WARNING" not in done.stderr and "non-flat" not in done.stderr, done.stderr[-3000:]
