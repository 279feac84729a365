"""What an outside trial of the tutorial grammar found: each mistake is a located message."""

from __future__ import annotations

import re
import textwrap

import pytest
from typer.testing import CliRunner

from runner.cli import app


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def reviews_csv(tmp_path):
    rows = ["review,label"] + [f"{'good fine great' if i % 2 else 'bad awful poor'} {i},{i % 2}" for i in range(24)]
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_plan_of_text_into_a_sequential_without_input_shape_is_located_not_a_traceback(tmp_path):
    reviews_csv(tmp_path)
    spec = write(tmp_path, "spec.yaml", """\
        version: 1
        name: textnum
        data:
          train:
            source:
              csv: {path: reviews.csv, header: true, label: label, features: [review], text: [review]}
            stages:
              - batch: {batch_size: 8}
        model:
          sequential:
            layers:
              - Dense: {units: 1}
        train:
          epochs: 1
          loss: {BinaryCrossentropy: {from_logits: true}}
          optimizer: adam
        """)
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "AttributeError" not in result.output
    # Located where run locates it (runner.train.loss_check): input_shape when declared, else the model.
    assert re.search(re.escape(f"{spec}:9:1: model: data.train does not fit the model's input: it "
                               "gives (8,) string: Input 0 with name 'None' of layer '") + r"dense(_\d+)?"
                     + re.escape("' is incompatible with the layer: expected min_ndim=2, found ndim=1"),
                     result.output), result.output


# --- windows ----------------------------------------------------------------------------------

WINDOWED = """\
    version: 1
    name: win
    seed: 1
    data:
      train:
        source:
          csv: {path: series.csv, header: true, features: [x], label: y}
        stages:
          - window: {length: 5, stride: 2, sampling_rate: 2, horizon: 1, targets: label}
          - batch: {batch_size: 8}
      test: {fraction: 0.2, shuffle: false}
    model:
      sequential:
        input_shape: [5, 1]
        layers:
          - Flatten: {}
          - Dense: {units: 1}
    train:
      epochs: 1
      loss: mse
      optimizer: {SGD: {learning_rate: 0.0}}
    outputs:
      dir: runs
    """


def series_csv(path, steps):
    path.write_text("x,y\n" + "".join(f"{t}.0,{t * 10 + 0.5}\n" for t in range(steps)))


@pytest.fixture(scope="module")
def windowed_run(tmp_path_factory):
    from runner.run.pipeline import run_spec
    from runner.spec import load_spec

    folder = tmp_path_factory.mktemp("windowed")
    series_csv(folder / "series.csv", 100)
    spec = write(folder, "win.yaml", WINDOWED)
    return folder, run_spec(load_spec(spec), quiet=True).run_dir


@pytest.mark.slow
def test_plan_counts_the_windows_cut_from_each_splits_steps(windowed_run):
    folder, _ = windowed_run
    result = CliRunner().invoke(app, ["plan", str(folder / "win.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("data.train: 80 steps -> 36 windows, 5 steps per epoch;") for line in lines), lines
    assert any(line.startswith("data.test: 20 steps -> 6 windows, 1 steps per epoch;") for line in lines), lines


@pytest.mark.slow
def test_a_window_longer_than_the_test_split_names_it(windowed_run, tmp_path):
    folder, _ = windowed_run
    spec = write(folder, "long.yaml", WINDOWED.replace("length: 5,", "length: 30,"))
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 1
    assert (f"{spec}:9:9: data.train.stages[0].window: a window spans 60 time steps (length 30, sampling_rate 2, "
            "horizon 1), but data.test has only 20 steps: shorten the window or hold out a larger fraction"
            ) in result.output


@pytest.mark.slow
def test_predict_on_a_windowed_run_counts_the_rows_it_writes(windowed_run, tmp_path):
    folder, run_dir = windowed_run
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(folder / "series.csv"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = out.read_text().splitlines()
    assert len(written) == 1 + 46  # starts 0, 2, ..., 90: every window of 100 steps, the last one's included
    assert f"({len(written) - 1} rows)" in result.output


@pytest.mark.slow
def test_predict_on_a_series_shorter_than_one_window_is_located_at_the_input(windowed_run, tmp_path):
    _, run_dir = windowed_run
    series_csv(tmp_path / "short.csv", 5)
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "short.csv"),
                                      "-o", str(tmp_path / "pred.csv")])
    assert result.exit_code == 1
    assert (f"{tmp_path / 'short.csv'}: the input has 5 time steps, but the run's window needs at least 9: "
            "give a series of at least 9 steps") in result.output
    assert not (tmp_path / "pred.csv").exists()


# --- classification by the loss Keras resolves, however it is spelled ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("loss, expected", [
    ("binary_crossentropy", {"kind": "binary", "from_logits": False}),
    ("bce", {"kind": "binary", "from_logits": False}),
    ("BinaryCrossentropy", {"kind": "binary", "from_logits": False}),
    ({"BinaryCrossentropy": {"from_logits": True}}, {"kind": "binary", "from_logits": True}),
    ({"class_name": "BinaryFocalCrossentropy", "config": {"from_logits": True}}, {"kind": "binary", "from_logits": True}),
    ({"BinaryCrossentropy": {"name": "my_loss"}}, {"kind": "binary", "from_logits": False}),
    ("sparse_categorical_crossentropy", {"kind": "multiclass", "from_logits": False}),
    ({"SparseCategoricalCrossentropy": {"from_logits": True, "name": "xent"}}, {"kind": "multiclass", "from_logits": True}),
    ("categorical_crossentropy", {"kind": "multiclass", "from_logits": False}),
    ({"out": "binary_crossentropy"}, {"kind": "binary", "from_logits": False}),
    ("mse", {"kind": "regression", "from_logits": False}),
    ({"Huber": {"name": "binary_categorical"}}, {"kind": "regression", "from_logits": False}),
])
def test_every_spelling_of_a_loss_reads_its_output_alike(write_spec, loss, expected):
    from runner.models.loss_kinds import output_kind
    from runner.spec import Spec

    spec = Spec(write_spec("{}"), {"model": {"functional": {"outputs": ["out"]}}, "train": {"loss": loss}})
    assert output_kind(spec) == expected


@pytest.mark.slow
def test_plan_takes_a_renamed_sparse_loss_for_a_sparse_one(tmp_path):
    import numpy as np

    np.savez(tmp_path / "d.npz", x=np.zeros((16, 3), np.float32), y=np.arange(16) % 3)
    spec = write(tmp_path, "spec.yaml", """\
        version: 1
        name: renamed
        data:
          train:
            source: {npz: {path: d.npz, features: x, label: y}}
            stages: [{batch: {batch_size: 16}}]
        model:
          sequential:
            input_shape: [3]
            layers: [{Dense: {units: 3}}]
        train:
          epochs: 1
          loss: {SparseCategoricalCrossentropy: {from_logits: true, name: xent}}
          optimizer: adam
        """)
    result = CliRunner().invoke(app, ["plan", str(spec)])
    assert result.exit_code == 0, result.output  # one class index per row: no "do not pair up"
    assert "classes in the first 16 examples: 0: 6, 1: 5, 2: 5" in result.output


@pytest.mark.slow
def test_predict_of_a_sigmoid_output_trained_with_the_string_loss_writes_classes(tmp_path):
    import numpy as np

    from runner.run.pipeline import run_spec
    from runner.spec import load_spec

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    np.save(tmp_path / "new.npy", x[:5])
    spec = write(tmp_path, "spec.yaml", """\
        version: 1
        name: stringloss
        seed: 5
        data:
          train:
            source: {npz: {path: d.npz, features: x, label: y}}
            stages: [{batch: {batch_size: 20}}]
        model:
          functional:
            inputs: {x: {shape: [4]}}
            layers:
              - {name: out, layer: {Dense: {units: 1, activation: sigmoid}}, inputs: x}
            outputs: [out]
        train:
          epochs: 1
          loss: binary_crossentropy
          optimizer: adam
        outputs: {dir: runs}
        """)
    run_dir = run_spec(load_spec(spec), quiet=True).run_dir
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "new.npy"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "class,probability_1" and len(lines) == 6
    for line in lines[1:]:
        cls, probability = line.split(",")
        assert 0 <= float(probability) <= 1 and int(cls) == int(float(probability) > 0.5)
