"""`pipe export`: each format, loaded in a process that never imports pipe, predicts as `pipe predict`.

Tiny runs of the image (Fashion-MNIST IDX), tabular (penguins CSV with text and gaps) and
regression specs, trained once per module; each exported file is run by
tests/export/serve_exported.py (tf.saved_model.load, LiteRT's interpreter, onnxruntime) on raw
test inputs, and its outputs are compared with the prediction pipe makes from the same raw
inputs.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import FASHION_MNIST, SPECS

pytestmark = pytest.mark.slow
tf = pytest.importorskip("tensorflow")

from runner.cli import app  # noqa: E402
from runner.export.write import export_run, missing_extra  # noqa: E402
from runner.outputs.manifest import fingerprint  # noqa: E402
from runner.commands.prediction import predict_file  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402
from runner.spec import load_spec  # noqa: E402

SERVE = Path(__file__).parent / "serve_exported.py"
FILES = {"saved_model": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
NEEDS = {"tflite": "ai_edge_litert", "onnx": "onnxruntime"}
needs_fashion = pytest.mark.skipif(not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                   reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def _needs(fmt):
    if fmt in NEEDS:
        pytest.importorskip(NEEDS[fmt], reason=f"pip install 'pipe[{fmt}]'")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of specs/ (its data too), so a test may change a spec file after its run."""
    base = tmp_path_factory.mktemp("export")
    shutil.copytree(SPECS, base / "specs")
    return base


def _train(folder: Path, name: str, *overrides) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        spec = load_spec(folder / "specs" / f"{name}.yaml", [f"outputs.dir={folder / 'runs'}", *overrides])
        return run_spec(spec, quiet=True).run_dir


@pytest.fixture(scope="module")
def fashion_run(folder):
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    return _train(folder, "fashion_mnist", "train.epochs=1", "outputs.plots.enabled=false")


@pytest.fixture(scope="module")
def tabular_run(folder):
    return _train(folder, "tabular", "train.epochs=3", "outputs.plots.enabled=false")


@pytest.fixture(scope="module")
def regression_run(folder):
    return _train(folder, "keras_regression", "train.epochs=2", "outputs.plots.enabled=false")


def _fashion_images(count=256) -> np.ndarray:
    raw = gzip.decompress((FASHION_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:count]


def _fashion_labels() -> np.ndarray:
    raw = gzip.decompress((FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    return np.frombuffer(raw, np.uint8, offset=8).astype(np.int64)


def _predicted(run: Path, features: np.ndarray, tmp_path: Path) -> np.ndarray:
    """What `pipe predict` writes for raw `features` (probabilities for classifiers)."""
    np.save(tmp_path / "raw.npy", features)
    predict_file(run, tmp_path / "raw.npy", tmp_path / "predicted.npy")
    return np.load(tmp_path / "predicted.npy")


def _penguin_columns(folder: Path):
    """The penguins CSV's feature columns as a serving client sends them: numbers (NaN for NA) and text."""
    with open(folder / "specs" / "data" / "penguins.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    text = {"island", "sex"}
    numbers = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    columns = {n: np.array([r[n] for r in rows]) for n in text}
    columns |= {n: np.array([np.nan if r[n] == "NA" else float(r[n]) for r in rows], np.float32) for n in numbers}
    return columns


def _tabular_reference(run: Path, folder: Path) -> np.ndarray:
    """The run's model on the CSV encoded as pipe encodes it (train's fills and vocabularies,
    its normalize statistics), with the CSV source and the steps `pipe predict` applies."""
    from runner.data.learned import load_learned
    from runner.data.sources import load_source
    from runner.data.table import encode_tables
    from runner.outputs.records import load_run_spec, read_run
    from runner.outputs.saving import load_model
    from runner.commands.prediction import preprocessing_steps

    spec = load_run_spec(run)
    options = {**spec.get("data", "train", "source", "csv"), "label": None}
    source = load_source(spec, ("input",), {"csv": options})
    encoded = encode_tables(spec, {"test": source}, load_learned(run))["test"]
    dataset = encoded.make()
    for step in preprocessing_steps(spec, run, "train", read_run(run).manifest["data_info"]):
        dataset = step(dataset)
    logits = load_model(run).predict(dataset.batch(512), verbose=0)
    return tf.nn.softmax(logits).numpy()


def _serve(fmt: str, path: Path, inputs: dict, tmp_path: Path) -> dict:
    """The exported file run by serve_exported.py in a fresh Python that never imports runner."""
    np.savez(tmp_path / "inputs.npz", **inputs)
    out = tmp_path / f"outputs-{fmt}.npz"
    done = subprocess.run([sys.executable, str(SERVE), fmt, str(path), str(tmp_path / "inputs.npz"), str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as archive:
        return {k: archive[k] for k in archive.files}


def _exported(run: Path, fmt: str, **options) -> Path:
    exported = export_run(run, fmt, **options)
    assert exported.sha256 == fingerprint(exported.path)
    return exported.path


@needs_fashion
@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_image_export_predicts_as_pipe_predict(fashion_run, fmt, tmp_path):
    _needs(fmt)
    images = _fashion_images()
    outputs = _serve(fmt, _exported(fashion_run, fmt), {"images": images}, tmp_path)
    expected = _predicted(fashion_run, images, tmp_path)
    assert sorted(outputs) == ["__deterministic__", "class", "probabilities"]
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["class"], expected.argmax(-1))
    assert outputs["__deterministic__"]  # predicted twice, the same


@needs_fashion
def test_the_plain_saved_model_holds_the_weights_and_one_kernel_for_the_pixels(fashion_run, tmp_path):
    """What BENCHMARKS.md (g) times: no optimizer state saved; uint8 pixels scaled by one
    Dequantize kernel, softmax as exp/sum (runner/export/graph_ops.py), the model's own ops."""
    import keras

    path = _exported(fashion_run, "saved_model", output=tmp_path / "sm")
    saved = dict(tf.train.list_variables(str(path / "variables" / "variables")))
    assert not [name for name in saved if "optimizer" in name]
    weights = sum(int(np.prod(shape)) for name, shape in saved.items() if shape)
    assert weights == keras.saving.load_model(fashion_run / "model.keras").count_params()
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    ops = {node.op for function in serve.graph.as_graph_def().library.function for node in function.node_def}
    assert "Dequantize" in ops and not ops & {"Cast", "Softmax"}


@needs_fashion
def test_jit_compiled_saved_model_predicts_as_pipe_predict(fashion_run, tmp_path):
    images = _fashion_images()
    path = _exported(fashion_run, "saved_model", output=tmp_path / "xla", jit_compile=True)
    outputs = _serve("saved_model", path, {"images": images}, tmp_path)
    np.testing.assert_allclose(outputs["probabilities"], _predicted(fashion_run, images, tmp_path), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_tabular_export_takes_text_and_gaps(tabular_run, folder, fmt, tmp_path):
    _needs(fmt)
    columns = _penguin_columns(folder)
    assert any(np.isnan(columns["body_mass_g"])) and "NA" in set(columns["sex"])  # gaps, as the file has
    outputs = _serve(fmt, _exported(tabular_run, fmt), columns, tmp_path)
    expected = _tabular_reference(tabular_run, folder)
    np.testing.assert_allclose(outputs["probabilities"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["class"], expected.argmax(-1))
    names = np.array(["Adelie", "Chinstrap", "Gentoo"])
    np.testing.assert_array_equal(outputs["class_name"], names[expected.argmax(-1)])


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_regression_export_predicts_as_pipe_predict(regression_run, fmt, tmp_path):
    _needs(fmt)
    x = np.linspace(-3.0, 3.0, 256, dtype=np.float32)[:, None]
    outputs = _serve(fmt, _exported(regression_run, fmt), {"features": x}, tmp_path)
    np.testing.assert_allclose(outputs["prediction"], _predicted(regression_run, x, tmp_path), rtol=1e-5, atol=1e-6)


def test_int8_tflite_of_a_table_with_text_columns_calibrates_by_input_name(tabular_run, folder, tmp_path):
    """LiteRT orders a signature's inputs by name, a table's columns are in file order and
    some are text: the calibration examples go by name, each in its input's dtype."""
    _needs("tflite")
    columns = _penguin_columns(folder)
    int8 = _exported(tabular_run, "tflite", quantize="int8", output=tmp_path / "int8.tflite")
    outputs = _serve("tflite", int8, columns, tmp_path)
    expected = _tabular_reference(tabular_run, folder)
    assert outputs["probabilities"].shape == expected.shape
    np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, atol=0.02)
    # a 3-epoch model whose classes are close: int8 keeps most of its decisions, not all
    assert (outputs["class"] == expected.argmax(-1)).mean() >= 0.6


@needs_fashion
def test_int8_tflite_keeps_accuracy_on_the_full_test_set(fashion_run, tmp_path):
    _needs("tflite")
    images, labels = _fashion_images(10_000), _fashion_labels()
    float_out = _serve("tflite", _exported(fashion_run, "tflite"), {"images": images}, tmp_path)
    int8 = _exported(fashion_run, "tflite", quantize="int8", output=tmp_path / "int8.tflite")
    int8_out = _serve("tflite", int8, {"images": images}, tmp_path)
    accuracy = (float_out["class"] == labels).mean()
    assert abs((int8_out["class"] == labels).mean() - accuracy) <= 0.01
    assert int8.stat().st_size < 0.4 * (fashion_run / "export" / "model.tflite").stat().st_size


def test_module_model_exports_its_call_with_a_signature(folder, tmp_path):
    run = _train(folder, "linear_regression", "train.epochs=5", "outputs.plots.enabled=false")
    x = np.linspace(-2.0, 2.0, 16, dtype=np.float32)[:, None]
    outputs = _serve("saved_model", _exported(run, "saved_model"), {"features": x}, tmp_path)
    np.testing.assert_allclose(outputs["prediction"], _predicted(run, x, tmp_path), rtol=1e-5)


def test_dropout_is_off_in_the_exported_model_and_outputs_export_lists_it(folder, tmp_path):
    """outputs.export in pipe run: the files in export/, their SHA-256 in the manifest;
    a Dropout layer predicts the same twice (inference mode)."""
    spec = folder / "specs" / "dropout.yaml"
    spec.write_text((folder / "specs" / "keras_regression.yaml").read_text().replace(
        "      - Dense: {units: 1}", "      - Dense: {units: 8}\n      - Dropout: {rate: 0.5}\n"
                                    "      - Dense: {units: 1}").replace("name: keras_regression", "name: dropout"))
    run = _train(folder, "dropout", "train.epochs=1", "outputs.export=[saved_model]")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["exports"] == [{"format": "saved_model", "path": "export/saved_model",
                                    "sha256": fingerprint(run / "export" / "saved_model"), "quantize": None}]
    x = np.linspace(-2.0, 2.0, 64, dtype=np.float32)[:, None]
    outputs = _serve("saved_model", run / "export" / "saved_model", {"features": x}, tmp_path)
    assert outputs["__deterministic__"]
    np.testing.assert_allclose(outputs["prediction"], _predicted(run, x, tmp_path), rtol=1e-5, atol=1e-6)


def test_tf_serving_request_built_from_the_signature(tabular_run, folder, tmp_path):
    """TF Serving's REST predict request (row format: one object per example), its keys and
    value kinds taken from the signature; fed back to the signature, it predicts as pipe."""
    path = _exported(tabular_run, "saved_model")
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    columns = _penguin_columns(folder)
    rows = [0, 200]  # an Adelie from Torgersen, a Gentoo from Biscoe; no gaps (JSON has no NaN)
    instances = [{name: (str(columns[name][r]) if spec.dtype == tf.string else float(f"{columns[name][r]:.6g}"))
                  for name, spec in sorted(inputs.items())} for r in rows]
    request = json.dumps({"signature_name": "serving_default", "instances": instances})
    assert request.startswith('{"signature_name": "serving_default", "instances": [{"bill_depth_mm": 18.7, '
                              '"bill_length_mm": 39.1, "body_mass_g": 3750.0, "flipper_length_mm": 181.0, '
                              '"island": "Torgersen", "sex": "male"}')
    body = json.loads(request)
    served = signature(**{name: tf.constant([row[name] for row in body["instances"]], spec.dtype)
                          for name, spec in inputs.items()})
    expected = _tabular_reference(tabular_run, folder)[rows]
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert [c.decode() for c in served["class_name"].numpy()] == \
        [["Adelie", "Chinstrap", "Gentoo"][i] for i in expected.argmax(-1)]


def _cli(*args):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def _copy_run(run: Path, tmp_path: Path, name="copy") -> Path:
    copy = tmp_path / "runs" / name / "20990101-000000"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export", "checkpoints"))
    return copy


@pytest.mark.parametrize("status, said", [("failed", "the run is failed"), ("diverged", "the run is diverged"),
                                          ("interrupted", "the run is interrupted")])
def test_a_run_that_did_not_complete_is_refused(regression_run, tmp_path, status, said):
    run = _copy_run(regression_run, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": status, "reason": "loss became nan"}))
    result = _cli(run, "--format", "saved_model")
    assert result.exit_code == 1
    assert f"pipe export: {run}: {said} (loss became nan); only a completed run's model is exported" in result.stderr
    assert not (run / "export").exists()


def test_a_killed_run_is_refused(regression_run, tmp_path):
    run = _copy_run(regression_run, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(status="running", pid=2 ** 22 + 17, host=manifest.get("host"))
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = _cli(run, "--format", "saved_model")
    assert result.exit_code == 1 and "the run is killed" in result.stderr


def test_a_replaced_model_file_is_refused(regression_run, tmp_path):
    run = _copy_run(regression_run, tmp_path)
    import keras

    assert json.loads((run / "manifest.json").read_text())["model_sha256"] == fingerprint(run / "model.keras")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.save(run / "model.keras")
    result = _cli(run, "--format", "saved_model")
    assert result.exit_code == 1
    assert result.stderr == (f"pipe export: {run}: the saved model is not the file the run wrote (its SHA-256 "
                             "differs from the manifest's model_sha256)\n")


def test_a_model_file_that_runs_code_is_refused(regression_run, tmp_path):
    """Safe mode stays on (here for a run whose manifest has no model_sha256 to check against)."""
    run = _copy_run(regression_run, tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    del manifest["model_sha256"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    import keras

    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2.0)(inputs))
    model.save(run / "model.keras")
    result = _cli(run, "--format", "saved_model")
    assert result.exit_code == 1
    assert f"pipe export: {run}: the saved model does not load in safe mode" in result.stderr
    assert "Lambda" in result.stderr


def test_output_paths_inside_another_run_or_unwritable_are_refused(regression_run, tabular_run, tmp_path):
    inside = tabular_run / "stolen"
    result = _cli(regression_run, "--format", "saved_model", "--output", inside)
    assert result.exit_code == 1
    assert f"pipe export: {inside}: inside another run directory ({tabular_run})" in result.stderr
    assert not inside.exists()
    (tmp_path / "a_file").write_text("")
    below_file = tmp_path / "a_file" / "saved_model"
    result = _cli(regression_run, "--format", "saved_model", "--output", below_file)
    assert result.exit_code == 1
    assert f"pipe export: {below_file}: cannot write there: {tmp_path / 'a_file'} is not a directory" in result.stderr
    (tmp_path / "taken").write_text("mine")
    result = _cli(regression_run, "--format", "saved_model", "--output", tmp_path / "taken")
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert (tmp_path / "taken").read_text() == "mine"


def test_bad_requests_are_one_line(regression_run):
    result = _cli(regression_run, "--format", "coreml")
    assert (result.exit_code, result.stderr) == (2, "pipe export: unknown format 'coreml' (use saved_model, tflite, onnx)\n")
    result = _cli(regression_run, "--format", "onnx", "--quantize", "int8")
    assert (result.exit_code, result.stderr) == (2, "pipe export: --quantize applies to tflite, not onnx\n")
    result = _cli(regression_run, "--format", "tflite", "--jit-compile")
    assert (result.exit_code, result.stderr) == (2, "pipe export: --jit-compile applies to saved_model, not tflite\n")


def test_a_second_export_to_the_default_path_is_numbered_and_keeps_the_first(regression_run, tmp_path):
    run = _copy_run(regression_run, tmp_path)
    first = _cli(run, "--format", "saved_model")
    assert first.exit_code == 0, first.output
    before = fingerprint(run / "export" / "saved_model")
    (run / "export" / "saved_model" / "mark").write_text("the first export")  # not replaced below
    second = _cli(run, "--format", "saved_model")
    assert second.exit_code == 0, second.output
    assert f"exported: {run / 'export' / 'saved_model-2'} (saved_model," in second.stdout
    assert (run / "export" / "saved_model" / "mark").read_text() == "the first export"
    exports = json.loads((run / "manifest.json").read_text())["exports"]  # the copied run's earlier ones first
    assert [e["path"] for e in exports][-2:] == ["export/saved_model", "export/saved_model-2"]
    assert exports[-2]["sha256"] == before


def test_a_map_op_that_cannot_be_exported_is_located(regression_run, tmp_path):
    """The run's spec.yaml is the truth: an augment op in the test split is named, located;
    in train (the prediction split of a spec without test) it is left out, as validation leaves it."""
    run = _copy_run(regression_run, tmp_path)
    text = (run / "spec.yaml").read_text()
    stages = "    stages:\n"
    assert stages in text and "  test:" not in text
    ops = "    - map:\n        ops:\n        - cast: {dtype: float32}\n        - augment: {layers: [RandomFlip]}\n"
    test_split = "  test:\n    source:\n      npy: {features: x.npy}\n    stages:\n" + ops
    np.save(tmp_path / "x.npy", np.zeros((4, 1), np.float32))
    (run / "spec.yaml").write_text(text.replace("data:\n", "data:\n" + test_split.replace("x.npy", str(tmp_path / "x.npy")), 1))
    result = _cli(run, "--format", "saved_model")
    assert result.exit_code == 1, result.stderr
    # Located at the op: the run's spec is checked again as it is loaded (augment is train-only),
    # and export refuses it too where a spec from before that rule gets through.
    assert "data.test.stages[0].map.ops[1]" in result.stderr and "augment" in result.stderr
    (run / "spec.yaml").write_text(text.replace(stages, stages + ops, 1))
    x = np.linspace(-1.0, 1.0, 8, dtype=np.float32)[:, None]
    outputs = _serve("saved_model", _exported(run, "saved_model"), {"features": x}, tmp_path)
    model = __import__("keras").saving.load_model(run / "model.keras")
    np.testing.assert_allclose(outputs["prediction"], model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_the_runs_own_spec_is_the_truth(regression_run, folder, tmp_path):
    """Changing the spec file the run came from changes nothing in its export."""
    original = folder / "specs" / "keras_regression.yaml"
    before = original.read_text()
    try:
        original.write_text(before.replace("    stages:\n", "    stages:\n      - map: {ops: [{scale: {factor: 100.0}}]}\n"))
        x = np.linspace(-1.0, 1.0, 8, dtype=np.float32)[:, None]
        outputs = _serve("saved_model", _exported(regression_run, "saved_model", output=tmp_path / "sm"),
                         {"features": x}, tmp_path)
        np.testing.assert_allclose(outputs["prediction"], _predicted(regression_run, x, tmp_path), rtol=1e-5)
    finally:
        original.write_text(before)


def test_a_missing_extra_is_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    installed = {"tf2onnx": None, "onnxruntime": object()}  # onnxruntime there, tf2onnx not
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: installed.get(name, real(name, *a)))
    assert missing_extra("onnx") == "exporting onnx needs tf2onnx: pip install 'pipe[onnx]'"
    assert missing_extra("saved_model") is None
    spec = load_spec(SPECS / "keras_regression.yaml", ["outputs.export=[saved_model, onnx]"])
    from runner.export.write import check_export_extras
    from runner.spec import SpecError

    with pytest.raises(SpecError) as error:
        check_export_extras(spec)  # pipe run says it before training
    assert str(error.value) == "--set outputs.export=[saved_model, onnx]: outputs.export[1]: " \
                               "exporting onnx needs tf2onnx: pip install 'pipe[onnx]'"


def test_a_written_file_that_does_not_reproduce_the_model_is_not_kept(regression_run, tmp_path, monkeypatch):
    """Each written file is run in its runtime before it is kept: a converter's change is caught."""
    import runner.export.write as export

    real = export._run_file
    monkeypatch.setattr(export, "_run_file", lambda *a: {k: v + 1.0 for k, v in real(*a).items()})
    target = tmp_path / "saved_model"
    with pytest.raises(RuntimeError, match="the exported saved_model model does not reproduce the run's model: "
                                           "its output 'prediction' differs on raw train examples"):
        export_run(regression_run, "saved_model", output=target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_no_folder_it_made(regression_run, tmp_path, monkeypatch):
    import runner.export.write as export

    real = export._run_file
    monkeypatch.setattr(export, "_run_file", lambda *a: {k: v + 1.0 for k, v in real(*a).items()})
    with pytest.raises(RuntimeError, match="does not reproduce the run's model"):
        export_run(regression_run, "saved_model", output=tmp_path / "a" / "b" / "saved_model")
    assert list(tmp_path.iterdir()) == []


MULTI = """\
version: 1
name: multi
seed: 9
data:
  train:
    source: {npz: {path: two.npz, features: [a, b], label: [cls, reg]}}
    stages:
      - map: {ops: [{scale: {factor: 0.5, on: a}}]}
      - batch: {batch_size: 40}
model:
  functional:
    inputs: {a: {shape: [8]}, b: {shape: [4]}}
    layers:
      - {name: cat, layer: Concatenate, inputs: [a, b]}
      - {name: h, layer: {Dense: {units: 16, activation: relu}}, inputs: cat}
      - {name: cls, layer: {Dense: {units: 3}}, inputs: h}
      - {name: reg, layer: {Dense: {units: 1}}, inputs: h}
    outputs: [cls, reg]
train:
  epochs: 1
  loss: {cls: {SparseCategoricalCrossentropy: {from_logits: true}}, reg: mse}
  optimizer: {SGD: {learning_rate: 0.1}}
outputs:
  plots: {enabled: false}
"""


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_named_inputs_and_one_set_of_outputs_per_model_output(folder, fmt, tmp_path):
    _needs(fmt)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(120, 8)).astype(np.float32), rng.normal(size=(120, 4)).astype(np.float32)
    np.savez(folder / "specs" / "two.npz", a=a, b=b, cls=rng.integers(0, 3, size=120).astype(np.int32),
             reg=rng.normal(size=(120, 1)).astype(np.float32))
    (folder / "specs" / "multi.yaml").write_text(MULTI)
    runs = sorted((folder / "runs" / "multi").glob("*")) if (folder / "runs" / "multi").is_dir() else []
    run = runs[-1] if runs else _train(folder, "multi")
    outputs = _serve(fmt, _exported(run, fmt, output=tmp_path / FILES[fmt]), {"a": a, "b": b}, tmp_path)
    import keras

    logits, regression = keras.saving.load_model(run / "model.keras")({"a": a * 0.5, "b": b}, training=False)
    assert sorted(outputs) == ["__deterministic__", "cls_class", "cls_probabilities", "reg_prediction"]
    np.testing.assert_allclose(outputs["cls_probabilities"], tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["cls_class"], np.argmax(logits, -1))
    np.testing.assert_allclose(outputs["reg_prediction"], regression, rtol=1e-5, atol=1e-6)


def test_an_int8_tflite_export_prints_no_deprecation_of_tensorflow_s_interpreter(regression_run, tmp_path):
    """The converter's calibration runs tf.lite.Interpreter, which warns that LiteRT replaces it:
    nothing for the user to act on, so not printed."""
    if missing_extra("tflite"):
        pytest.skip(missing_extra("tflite"))
    run = _copy_run(regression_run, tmp_path)
    result = _cli(run, "--format", "tflite", "--quantize", "int8")
    assert result.exit_code == 0, result.output
    assert "deprecated" not in result.stderr and "Warning" not in result.stderr, result.stderr


def test_without_litert_the_file_is_run_by_tensorflow_s_interpreter_silently(regression_run, tmp_path, monkeypatch):
    import builtins
    import warnings

    from runner.export import write

    if missing_extra("tflite"):
        pytest.skip(missing_extra("tflite"))
    path = _exported(_copy_run(regression_run, tmp_path), "tflite")
    real_import = builtins.__import__

    def no_litert(name, *args, **kwargs):
        if name.startswith("ai_edge_litert"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_litert)
    import importlib.util

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real_find(name, *a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail here
        interpreter = write._tflite_interpreter(path)
    assert type(interpreter).__module__.startswith("tensorflow.lite")
    assert write.missing_extra("tflite") is None  # TensorFlow's interpreter serves where LiteRT is absent
