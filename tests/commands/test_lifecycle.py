"""After the run, as a user types it: run, evaluate, predict, runs, compare, init — on real runs.

Two kinds of real runs, shared per session: the seed linear regression (a tf.Module, the
custom loop; three runs of 1, 2 and 3 epochs with a synthetic test split) and the
Fashion-MNIST classifier (Keras fit, full data, one epoch).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.conftest import FASHION_MNIST, REPO, SPECS, pipe_in_process

pytestmark = pytest.mark.slow

# The seed data again, as the test split: 101 points of y = 3x + 2 + N(0, 1), seeded.
TEST_SPLIT = ("data.test={source: {synthetic: {x: {linspace: {start: -2.0, stop: 2.0, num: 101}}, "
              "y: {linear: {w: 3.0, b: 2.0}}, noise: {stddev: 1.0}}}, stages: [{batch: {batch_size: 50}}]}")
# TensorFlow's C++ log prefix: absl's `I0000 00:00:... file.cc:N]` (TensorFlow 2.17 and later)
# or `2026-11-28 09:34:52.820029: I file.cc:N]` (TensorFlow 2.16).
TF_LINE = re.compile(r"^([IWEF]\d{4} |\d{4}-\d\d-\d\d [\d:.]+: [IWEF] )", re.M)


# Printed once by `pipe run` where the installed Keras is not the one the catalog was made
# from (CI's minimum-versions environment): pipe's own line, not noise.
CATALOG_NOTE = re.compile(r"^note: pipe validate checks Keras names against a catalog made from .*\n", re.M)


def pipe(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], capture_output=True, text=True,
                            cwd=cwd, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    result.stderr = CATALOG_NOTE.sub("", result.stderr)
    return result


def run_dir_of(result, cwd):
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("run directory: "))
    return cwd / line.split(": ", 1)[1]


@pytest.fixture(scope="session")
def regression_runs(tmp_path_factory):
    """Three runs of specs/linear_regression.yaml (1, 2, 3 epochs), oldest first, and the first's output."""
    cwd = tmp_path_factory.mktemp("regression")
    results = [pipe("run", SPECS / "linear_regression.yaml", "--set", f"train.epochs={epochs}",
                    "--set", TEST_SPLIT, cwd=cwd) for epochs in (1, 2, 3)]
    return cwd, [run_dir_of(r, cwd) for r in results], results[0]


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory):
    """specs/fashion_mnist.yaml for one epoch: (cwd, run directory, the run's output)."""
    if not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST is not installed at {FASHION_MNIST} (apt-get install dataset-fashion-mnist)")
    cwd = tmp_path_factory.mktemp("fashion")
    # The tf.data engine: `pipe evaluate` recomputes as it did (a fused run's in-memory
    # evaluation agrees to float32 rounding only).
    result = pipe("run", SPECS / "fashion_mnist.yaml", "--set", "train.epochs=1", "--set", "train.engine=keras",
                  cwd=cwd)
    return cwd, run_dir_of(result, cwd), result


def fashion_test_set():
    def read(name, offset):
        return np.frombuffer(gzip.decompress((FASHION_MNIST / name).read_bytes()), np.uint8, offset=offset)

    return read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28), read("t10k-labels-idx1-ubyte.gz", 8)


# --- a quiet, honest console ---------------------------------------------------------------

def test_run_writes_only_pipes_own_lines_and_keeps_tensorflows_in_the_run_directory(regression_runs):
    _, run_dirs, first = regression_runs
    assert first.stderr == ""  # no I0000/E0000 start-up lines, no warnings
    assert first.stdout.splitlines()[2] == "Epoch 1: W = 4.46, b = 0.39, loss=10.00407"  # numbered from 1
    log = (run_dirs[0] / "tensorflow.log").read_text()
    assert TF_LINE.search(log), log  # TensorFlow's own start-up lines, kept


def test_verbose_shows_tensorflows_log(tmp_path):
    result = pipe("run", SPECS / "linear_regression.yaml", "--set", "train.epochs=1", "--quiet", "--verbose",
                  cwd=tmp_path)
    run_dir = run_dir_of(result, tmp_path)
    assert TF_LINE.search(result.stderr)
    assert result.stderr.strip() == (run_dir / "tensorflow.log").read_text().strip()


def test_without_a_terminal_fit_prints_one_line_per_epoch(fashion_run):
    _, run_dir, result = fashion_run
    assert "\x1b" not in result.stdout and "\r" not in result.stdout and "\b" not in result.stdout
    assert re.search(r"^469/469 - .*loss: [0-9.]+ .*val_loss: [0-9.]+$", result.stdout, re.M), result.stdout
    assert result.stderr == ""  # nor "Your input ran out of data" nor "Local rendezvous ..."
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[1].startswith("1,")  # epochs numbered from 1


def test_a_reloaded_module_savedmodel_is_callable(regression_runs):
    import tensorflow as tf

    _, run_dirs, _ = regression_runs
    loaded = tf.saved_model.load(str(run_dirs[2] / "saved_model"))
    trajectories = json.loads((run_dirs[2] / "trajectories.json").read_text())
    x = tf.constant([[0.0], [1.0]])
    w, b = trajectories["w"][-1], trajectories["b"][-1]
    np.testing.assert_allclose(loaded(x).numpy(), [[b], [w + b]], rtol=1e-6)
    np.testing.assert_allclose(loaded.serve(x).numpy(), loaded(x).numpy())


# --- evaluate -------------------------------------------------------------------------------

def test_evaluate_reproduces_the_custom_loop_runs_test_metrics_and_never_overwrites(regression_runs):
    cwd, run_dirs, _ = regression_runs
    run_dir = run_dirs[1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    first = pipe("evaluate", run_dir, cwd=cwd)
    second = pipe("evaluate", run_dir, cwd=cwd)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stderr == ""
    assert first.stdout.splitlines()[0] == f"test: loss={metrics['test']['loss']:.5g}"
    files = sorted(run_dir.glob("evaluation-*.json"))
    assert len(files) == 2  # a second evaluation is a new file
    for file in files:
        assert json.loads(file.read_text())["metrics"] == {"test": metrics["test"]}  # exactly



def test_a_run_that_cannot_be_written_is_evaluated_and_said_not_kept(regression_runs, monkeypatch, tmp_path):
    """A read-only run directory (as root, write permission bits do not stop a write: the
    refusal is the file system's) still gets its figures printed; the evaluation is said not
    kept, exit 1; so is a prediction into a folder that cannot be written."""
    import runner.commands.evaluation as evaluation
    import runner.commands.prediction as prediction

    cwd, run_dirs, _ = regression_runs
    run_dir = run_dirs[1]

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(evaluation, "write_result", refuse)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    result = pipe_in_process(["evaluate", run_dir], cwd=cwd)
    assert result.returncode == 1, result.stderr
    assert result.stdout == f"test: loss={metrics['test']['loss']:.5g}\n"
    assert re.fullmatch(r"pipe evaluate: not kept: cannot write .*evaluation-.*\.json: Permission denied\n",
                        result.stderr)

    monkeypatch.setattr(prediction, "write_predictions", refuse)
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 5, dtype="float32").reshape(-1, 1))
    (tmp_path / "out").mkdir()
    result = pipe_in_process(["predict", run_dir, tmp_path / "x.npy", "--output", tmp_path / "out" / "p.csv"], cwd=cwd)
    assert (result.returncode, result.stderr) == (1, f"{tmp_path / 'out' / 'p.csv'}: cannot write there: "
                                                     "Permission denied\n")

def test_evaluate_reproduces_the_fit_runs_test_metrics_with_a_confusion_matrix(fashion_run):
    cwd, run_dir, _ = fashion_run
    result = pipe("evaluate", run_dir, cwd=cwd)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    path = cwd / result.stdout.splitlines()[-1].split(": ", 1)[1]
    written = json.loads(path.read_text())
    assert written["metrics"] == {"test": metrics["test"]}
    matrix = np.array(written["confusion_matrix"]["test"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) == round(metrics["test"]["SparseCategoricalAccuracy"] * 10_000)
    assert path.with_name(f"{path.stem}-test-confusion_matrix.png").is_file()


def test_evaluate_on_other_data_and_predict_agree(fashion_run, tmp_path):
    cwd, run_dir, _ = fashion_run
    images, labels = fashion_test_set()
    np.save(tmp_path / "x.npy", images[:1000])
    np.save(tmp_path / "y.npy", labels[:1000].astype(np.int64))
    source = f"data.test.source={{npy: {{features: {tmp_path}/x.npy, label: {tmp_path}/y.npy}}}}"
    evaluated = pipe_in_process(["evaluate", run_dir, "--set", source], cwd=cwd)
    assert evaluated.returncode == 0, evaluated.stderr
    path = cwd / evaluated.stdout.splitlines()[-1].split(": ", 1)[1]
    accuracy = json.loads(path.read_text())["metrics"]["test"]["SparseCategoricalAccuracy"]

    predicted = pipe_in_process(["predict", run_dir, tmp_path / "x.npy", "--output", tmp_path / "p.jsonl"], cwd=cwd)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout == f"predictions: {tmp_path}/p.jsonl (1000 rows)\n"
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 1000 and set(rows[0]) == {"class", "probabilities"}
    assert sum(rows[0]["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    classes = np.array([r["class"] for r in rows])
    assert np.mean(classes == labels[:1000]) == pytest.approx(accuracy, abs=1e-6)


# --- predict --------------------------------------------------------------------------------

def test_predict_on_the_raw_idx_test_images_reproduces_the_runs_accuracy(fashion_run, tmp_path):
    cwd, run_dir, _ = fashion_run
    images, labels = fashion_test_set()
    result = pipe("predict", run_dir, FASHION_MNIST / "t10k-images-idx3-ubyte.gz", "-o", tmp_path / "p.csv", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "class," + ",".join(f"probability_{i}" for i in range(10))
    classes = np.array([int(line.split(",")[0]) for line in lines[1:]])
    accuracy = json.loads((run_dir / "metrics.json").read_text())["test"]["SparseCategoricalAccuracy"]
    assert len(classes) == 10_000
    assert np.mean(classes == labels) == pytest.approx(accuracy, abs=1e-6)

    # The same images as a raw uint8 NPY, to NPY probabilities: the same classes.
    np.save(tmp_path / "raw.npy", images)
    result = pipe("predict", run_dir, tmp_path / "raw.npy", "-o", tmp_path / "p.npy", cwd=cwd)
    assert result.returncode == 0, result.stderr
    probabilities = np.load(tmp_path / "p.npy")
    assert probabilities.shape == (10_000, 10)
    np.testing.assert_array_equal(probabilities.argmax(-1), classes)


def test_predict_regression_and_a_bad_output_format(regression_runs, tmp_path):
    cwd, run_dirs, _ = regression_runs
    np.save(tmp_path / "x.npy", np.array([[0.0], [1.0], [2.0]], np.float32))
    result = pipe("predict", run_dirs[2], tmp_path / "x.npy", "--output", tmp_path / "y.csv", cwd=cwd)
    assert result.returncode == 0, result.stderr
    trajectories = json.loads((run_dirs[2] / "trajectories.json").read_text())
    w, b = trajectories["w"][-1], trajectories["b"][-1]
    lines = (tmp_path / "y.csv").read_text().splitlines()
    assert lines[0] == "prediction"
    np.testing.assert_allclose([float(v) for v in lines[1:]], [b, w + b, 2 * w + b], rtol=1e-6)

    bad = pipe("predict", run_dirs[2], tmp_path / "x.npy", "--output", tmp_path / "y.parquet", cwd=cwd)
    assert bad.returncode == 2  # a usage mistake, found before TensorFlow starts
    assert bad.stderr == (f"pipe predict: --output {tmp_path}/y.parquet: unknown output format '.parquet' "
                          "(use .csv, .npy, .jsonl)\n")


# --- runs and compare -----------------------------------------------------------------------

def test_runs_lists_three_runs_newest_first(regression_runs):
    cwd, run_dirs, _ = regression_runs
    result = pipe("runs", "--format", "json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["run"] for row in rows] == [str(p.relative_to(cwd)) for p in reversed(run_dirs)]
    assert [row["epochs"] for row in rows] == [3, 2, 1]
    assert {row["status"] for row in rows} == {"completed"}
    assert rows[0]["split"] == "test" and set(rows[0]["metrics"]) == {"loss"}

    table = pipe("runs", "runs", cwd=cwd).stdout.splitlines()
    assert table[0].split() == ["RUN", "STATUS", "START", "EPOCHS", "WALL", "METRICS"]
    assert table[1].startswith(str(run_dirs[2].relative_to(cwd)))
    assert " completed " in table[1] and "test: loss=" in table[1]


def test_compare_diffs_the_specs_and_sets_metrics_side_by_side(regression_runs):
    cwd, run_dirs, _ = regression_runs
    result = pipe("compare", *run_dirs, cwd=cwd)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "-  epochs: 1\n+  epochs: 2\n" in text and "-  epochs: 1\n+  epochs: 3\n" in text
    losses = [json.loads((d / "metrics.json").read_text())["test"]["loss"] for d in run_dirs]
    row = next(line for line in text.splitlines() if line.startswith("test.loss"))
    assert row.split() == ["test.loss", f"{losses[0]:.5g}", f"{losses[1]:.5g}", f"({losses[1] - losses[0]:+.4g})",
                           f"{losses[2]:.5g}", f"({losses[2] - losses[0]:+.4g})"]


# --- init, and what relative paths mean --------------------------------------------------------

def test_init_templates_validate_and_run_one_epoch_with_paths_as_documented(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # In this process (TensorFlow imported once): the commands' console is tested above.
    for template in ("regression", "module", "image-classification", "tabular-csv"):
        if template == "image-classification" and not FASHION_MNIST.exists():
            continue
        result = pipe_in_process(["init", template, project], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        spec = project / f"{template}.yaml"
        assert pipe_in_process(["validate", spec], cwd=tmp_path).returncode == 0
        extra = []
        if template == "image-classification":  # the 10,000 test images as train: small and real
            extra = ["--set", f"data.train.source.idx.images={FASHION_MNIST}/t10k-images-idx3-ubyte.gz",
                     "--set", f"data.train.source.idx.labels={FASHION_MNIST}/t10k-labels-idx1-ubyte.gz"]
        # Run from another folder: inputs are found next to the spec (tabular-sample.csv),
        # the run directory goes under the working directory (outputs.dir: runs).
        run = pipe_in_process(["run", spec, "--set", "train.epochs=1", "--quiet", *extra], cwd=elsewhere)
        run_dir = run_dir_of(run, elsewhere)
        assert run_dir.parent.parent == elsewhere / "runs"
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
    # A run's spec keeps its relative paths' meaning: evaluate from a third folder.
    tabular = next((elsewhere / "runs" / "tabular_csv").iterdir())
    evaluated = pipe_in_process(["evaluate", tabular], cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tabular / "metrics.json").read_text())
    assert json.loads(next(tabular.glob("evaluation-*.json")).read_text())["metrics"]["validation"] == \
        metrics["validation"]
    assert yaml.safe_load((tabular / "spec.yaml").read_text())["data"]["train"]["source"]["csv"]["path"] == \
        "tabular-sample.csv"


FILTERED = """\
version: 1
name: filtered
seed: 1
data:
  train:
    source: {npy: {features: x.npy, label: y.npy}}
    stages: [{filter: {label_in: [0, 1]}}, {batch: {batch_size: 32}}]
  test:
    source: {npy: {features: x.npy, label: y.npy}}
    stages: [{filter: {label_in: [0, 1]}}, {batch: {batch_size: 32}}]
model:
  sequential: {input_shape: [3], layers: [{Dense: {units: 3}}]}
train:
  loop: LOOP
  epochs: 2
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  metrics: [SparseCategoricalAccuracy]
"""


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_datasets_of_unknown_length_run_and_evaluate_without_warnings(tmp_path, loop):
    """After `filter` tf.data cannot tell a split's length: Keras warns "Your input ran out of
    data" at its end, though reading a finite split to its end is what an epoch is."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x.sum(1) > 0).astype(np.int64) + 2 * (x[:, 0] > 1))
    (tmp_path / "spec.yaml").write_text(FILTERED.replace("LOOP", loop))
    run = pipe("run", "spec.yaml", cwd=tmp_path)
    run_dir = run_dir_of(run, tmp_path)
    assert run.stderr == ""
    epoch_lines = [line for line in run.stdout.splitlines() if line.startswith("12/12 - ")]
    assert len(epoch_lines) == 2  # one line per epoch, its length learnt in the first
    evaluated = pipe("evaluate", run_dir, cwd=tmp_path)
    assert evaluated.returncode == 0 and evaluated.stderr == ""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(next(run_dir.glob("evaluation-*.json")).read_text())["metrics"] == {"test": metrics["test"]}


def test_predict_on_a_folder_of_png_images(fashion_run, tmp_path):
    import keras
    import tensorflow as tf

    cwd, run_dir, _ = fashion_run
    images, _ = fashion_test_set()
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(30):  # grey PNGs, as a user's folder of images would hold them
        (folder / f"{i:03d}.png").write_bytes(tf.io.encode_png(images[i][..., None]).numpy())
    result = pipe("predict", run_dir, folder, "--output", tmp_path / "p.csv", cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("file,class,probability_0,")
    assert [line.split(",")[0] for line in lines[1:]] == [f"{i:03d}.png" for i in range(30)]
    classes = [int(line.split(",")[1]) for line in lines[1:]]
    model = keras.saving.load_model(run_dir / "model.keras")
    expected = model.predict(images[:30].astype(np.float32) / 255.0, verbose=0).argmax(-1)
    assert classes == expected.tolist()


LEARNED_NORMALIZE = """\
version: 1
name: learned
seed: 3
data:
  train:
    source: {npy: {features: x.npy, label: y.npy}}
    stages:
      - map: {ops: [{normalize: {}}]}
      - batch: {batch_size: 32}
  test:
    source: {npy: {features: x.npy, label: y.npy}}
    stages:
      - map: {ops: [{normalize: {}}]}
      - batch: {batch_size: 32}
model:
  sequential:
    input_shape: [2]
    layers: [{Dense: {units: 1}}]
train: {epochs: 2, loss: mse, optimizer: {SGD: {learning_rate: 0.05}}}
"""


def test_predict_applies_the_normalisation_the_run_learned_from_train(tmp_path):
    """Raw inputs are normalised with train's saved statistics, never with their own."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal([100.0, -5.0], [10.0, 0.5], size=(256, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, :1] - 100.0) / 10.0)
    (tmp_path / "spec.yaml").write_text(LEARNED_NORMALIZE)
    run_dir = run_dir_of(pipe_in_process(["run", tmp_path / "spec.yaml", "--quiet"], cwd=tmp_path), tmp_path)
    (statistics,) = json.loads((run_dir / "preprocessing.json").read_text())["normalize"]
    raw = np.array([[120.0, -5.0], [80.0, -4.0]], np.float32)  # far from the mean of their own
    np.save(tmp_path / "raw.npy", raw)
    result = pipe_in_process(["predict", run_dir, tmp_path / "raw.npy", "--output", tmp_path / "p.npy"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = keras.saving.load_model(run_dir / "model.keras")
    normalised = (raw - np.array(statistics["mean"])) / np.sqrt(np.array(statistics["variance"]))
    expected = model.predict(normalised.astype(np.float32), verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy").reshape(-1), expected.reshape(-1), rtol=1e-4, atol=1e-5)
