"""`pipe predict` on every kind of model `pipe run` trains: a tabular CSV run, named inputs
and several outputs, a binary SavedModel fed a folder of images, CSVs that still hold the
label column; and the confusion matrix of a binary output among several."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from runner.spec import load_spec
from runner.spec.errors import SpecError
from tests.conftest import SPECS, pipe_in_process

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.commands.evaluation import evaluate_run  # noqa: E402
from runner.outputs.predictions import confusion_matrices  # noqa: E402
from runner.outputs.saving import load_model  # noqa: E402
from runner.commands.prediction import predict_file  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

PENGUINS = SPECS / "data" / "penguins.csv"


def pipe(*args, cwd):
    return pipe_in_process(args, cwd)


def _run(path: Path, *overrides):
    result = run_spec(load_spec(path, overrides=list(overrides)), quiet=True)
    assert json.loads((result.run_dir / "manifest.json").read_text())["status"] == "completed"
    return result.run_dir


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------ the shipped tabular spec


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tabular")
    return folder, _run(SPECS / "tabular.yaml", "train.epochs=5", f"outputs.dir={folder / 'runs'}")


def test_predict_on_the_tabular_specs_own_csv_agrees_with_evaluate(tabular_run, tmp_path):
    """The penguins file as it is (text, gaps, the species column): encoded with what train
    taught the run, the label column ignored and said so; the classes named; the same
    accuracy `pipe evaluate` gives on that file."""
    _, run_dir = tabular_run
    predictions = predict_file(run_dir, PENGUINS, tmp_path / "p.csv")
    assert predictions.notes == [f"{PENGUINS}: the label column 'species' is ignored"]
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "class,class_name,probability_0,probability_1,probability_2"
    species = [line.split(",")[0] for line in PENGUINS.read_text().splitlines()[1:]]
    assert predictions.count == len(lines) - 1 == len(species) == 344
    names = [line.split(",")[1] for line in lines[1:]]
    assert set(names) <= {"Adelie", "Chinstrap", "Gentoo"}

    source = yaml.safe_load((run_dir / "spec.yaml").read_text())["data"]["train"]["source"]
    source["csv"]["path"] = str(PENGUINS)
    test = {"source": source, "stages": [{"map": {"ops": [{"normalize": {}}]}}, {"batch": {"batch_size": 32}}]}
    evaluated = evaluate_run(run_dir, [f"data.test={json.dumps(test)}"], ["test"]).metrics
    accuracy = np.mean([a == b for a, b in zip(names, species)])
    assert accuracy == pytest.approx(evaluated["test"]["accuracy"], abs=1e-6)
    assert accuracy > 0.8  # five epochs learn the species


def test_a_key_left_out_or_an_unknown_input_kind_is_a_usage_mistake(tabular_run, tmp_path):
    """Exit 2, as every mistake of the command line; what a file holds stays exit 1."""
    from typer.testing import CliRunner

    from runner.cli import app

    folder, run_dir = tabular_run
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4), np.float32), b=np.zeros((2, 4), np.float32))
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    for given, said in [("two.npz", "the archive holds several arrays: name one with --key"),
                        ("x.parquet", "unknown input kind: give a .npy, .npz, .csv(.gz)")]:
        result = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / given), "-o", str(tmp_path / "p.csv")])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"{tmp_path / given}: {said}")
        assert not (tmp_path / "p.csv").exists()


def test_pipe_predict_says_the_ignored_label_once(tabular_run, tmp_path):
    folder, run_dir = tabular_run
    (tmp_path / "few.csv").write_text("\n".join(PENGUINS.read_text().splitlines()[:6]) + "\n")
    result = pipe("predict", run_dir, tmp_path / "few.csv", "--output", tmp_path / "p.jsonl", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("is ignored") == 1
    assert f"pipe predict: {tmp_path / 'few.csv'}: the label column 'species' is ignored" in result.stderr
    assert result.stdout == f"predictions: {tmp_path / 'p.jsonl'} (5 rows)\n"
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in rows] == [["class", "class_name", "probabilities"]] * 5
    assert all(r["class_name"] == ["Adelie", "Chinstrap", "Gentoo"][r["class"]] for r in rows)

    # Without the label column: the same rows, nothing said.
    text = "\n".join(",".join(line.split(",")[1:]) for line in (tmp_path / "few.csv").read_text().splitlines())
    (tmp_path / "unlabelled.csv").write_text(text + "\n")
    result = pipe("predict", run_dir, tmp_path / "unlabelled.csv", "-o", tmp_path / "q.jsonl", cwd=folder)
    assert result.returncode == 0 and "ignored" not in result.stderr, result.stderr
    assert (tmp_path / "q.jsonl").read_text() == (tmp_path / "p.jsonl").read_text()


# ------------------------------------------------------------------ named inputs, several outputs

MULTI = """\
version: 1
name: multi
seed: 0
data:
  train:
    source: {npz: {path: data.npz, features: [image, extra], label: [item, top, ink]}}
    stages:
      - batch: {batch_size: 16}
  test:
    source: {npz: {path: data.npz, features: [image, extra], label: [item, top, ink]}}
    stages:
      - batch: {batch_size: 16}
model:
  functional:
    inputs:
      image: {shape: [4, 4]}
      extra: {shape: [2]}
    layers:
      - {name: flat, layer: Flatten, inputs: [image]}
      - {name: joined, layer: Concatenate, inputs: [flat, extra]}
      - {name: hidden, layer: {Dense: {units: 8, activation: relu}}, inputs: [joined]}
      - {name: item, layer: {Dense: {units: 3}}, inputs: [hidden]}
      - {name: top, layer: {Dense: {units: 1}}, inputs: [hidden]}
      - {name: ink, layer: {Dense: {units: 1}}, inputs: [hidden]}
    outputs: [item, top, ink]
train:
  epochs: 2
  loss: {item: {SparseCategoricalCrossentropy: {from_logits: true}}, top: {BinaryCrossentropy: {from_logits: true}},
         ink: mse}
  optimizer: adam
  metrics: {item: [accuracy], top: [accuracy], ink: [mae]}
  verbose: 0
outputs:
  dir: runs
"""


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi")
    rng = np.random.default_rng(0)
    image, extra = rng.random((120, 4, 4)).astype(np.float32), rng.random((120, 2)).astype(np.float32)
    item = (image.mean((1, 2)) * 3).astype(np.int64).clip(0, 2)
    top = (extra[:, :1] > 0.5).astype(np.float32)  # binary labels as floats, as BinaryCrossentropy takes them
    np.savez(folder / "data.npz", image=image, extra=extra, item=item, top=top, ink=extra[:, 1:])
    np.savez(folder / "new.npz", image=image[:10], extra=extra[:10])
    (folder / "spec.yaml").write_text(MULTI.replace("dir: runs", f"dir: {folder / 'runs'}"))
    return folder, _run(folder / "spec.yaml")


def _expected(folder, run_dir):
    new = np.load(folder / "new.npz")
    item, top, ink = load_model(run_dir)({"image": new["image"], "extra": new["extra"]}, training=False)
    return _softmax(np.asarray(item)), 1 / (1 + np.exp(-np.asarray(top)[:, 0])), np.asarray(ink)[:, 0]


def test_named_inputs_from_an_npz_and_a_column_group_per_output(multi_run, tmp_path):
    folder, run_dir = multi_run
    predictions = predict_file(run_dir, folder / "new.npz", tmp_path / "p.csv")
    assert predictions.count == 10 and predictions.classes is None and predictions.notes == []
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == ("item_class,item_probability_0,item_probability_1,item_probability_2,"
                        "top_class,top_probability_1,ink_prediction")
    rows = np.array([[float(c) for c in line.split(",")] for line in lines[1:]])
    item, top, ink = _expected(folder, run_dir)
    np.testing.assert_allclose(rows[:, 1:4], item, rtol=1e-5)
    np.testing.assert_array_equal(rows[:, 0], item.argmax(-1))
    np.testing.assert_allclose(rows[:, 5], top, rtol=1e-5)
    np.testing.assert_array_equal(rows[:, 4], (top >= 0.5).astype(int))
    np.testing.assert_allclose(rows[:, 6], ink, rtol=1e-5)


def test_several_outputs_as_json_fields_and_not_as_one_npy(multi_run, tmp_path):
    folder, run_dir = multi_run
    predict_file(run_dir, folder / "new.npz", tmp_path / "p.jsonl")
    first = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    item, top, ink = _expected(folder, run_dir)
    assert sorted(first) == ["ink", "item", "top"]
    assert first["item"]["class"] == int(item[0].argmax())
    np.testing.assert_allclose(first["item"]["probabilities"], item[0], rtol=1e-5)
    assert sorted(first["top"]) == ["class", "probability_1"]
    assert first["top"]["probability_1"] == pytest.approx(top[0], rel=1e-5)
    assert first["ink"]["prediction"] == [pytest.approx(ink[0], rel=1e-5)]
    with pytest.raises(SpecError) as error:
        predict_file(run_dir, folder / "new.npz", tmp_path / "p.npy")
    assert str(error.value) == (f"{tmp_path / 'p.npy'}: the model has 3 outputs (item, top, ink): "
                                "write them to a .csv or .jsonl file")
    assert not (tmp_path / "p.npy").exists()


def test_an_archive_without_an_input_the_model_reads_is_located(multi_run, tmp_path):
    folder, run_dir = multi_run
    np.savez(tmp_path / "half.npz", image=np.zeros((2, 4, 4), np.float32))
    with pytest.raises(SpecError) as error:
        predict_file(run_dir, tmp_path / "half.npz", tmp_path / "p.csv")
    assert str(error.value) == (f"{tmp_path / 'half.npz'}: the model reads the arrays image, extra; "
                                "the archive has no extra (arrays: image)")
    with pytest.raises(SpecError) as error:
        predict_file(run_dir, folder / "new.npz", tmp_path / "p.csv", key="image")
    assert str(error.value) == (f"{folder / 'new.npz'}: the model reads 2 named inputs (image, extra): leave out "
                                "--key, the archive's arrays of those names are read")


def test_a_binary_output_among_several_gets_its_confusion_matrix(multi_run):
    folder, run_dir = multi_run
    assert (run_dir / "confusion_matrix_item.png").is_file() and (run_dir / "confusion_matrix_top.png").is_file()
    assert not (run_dir / "confusion_matrix_ink.png").exists()  # regression
    data = np.load(folder / "data.npz")
    dataset = tf.data.Dataset.from_tensor_slices(
        ({"image": data["image"], "extra": data["extra"]},
         {"item": data["item"], "top": data["top"], "ink": data["ink"]})).batch(32)
    model = load_model(run_dir)
    matrices = confusion_matrices(model, dataset)
    assert sorted(matrices) == ["item", "top"]
    logits = np.asarray(model({"image": data["image"], "extra": data["extra"]}, training=False)[1])[:, 0]
    predicted = (logits > 0).astype(int)
    truth = data["top"][:, 0].astype(int)
    expected = [[np.sum((truth == t) & (predicted == p)) for p in (0, 1)] for t in (0, 1)]
    np.testing.assert_array_equal(matrices["top"], expected)


# ------------------------------------------------------------------ a binary SavedModel, image folders

IMAGES = """\
version: 1
name: images
seed: 0
data:
  train:
    source: {image_folder: {directory: data, image_size: [8, 8], color_mode: grayscale}}
    stages:
      - map: {ops: [{scale: {divisor: 255.0}}]}
      - batch: {batch_size: 8}
model:
  sequential:
    input_shape: [8, 8, 1]
    layers:
      - Flatten: {}
      - Dense: {units: 1}
train:
  epochs: 2
  loss: {BinaryCrossentropy: {from_logits: true}}
  optimizer: adam
  verbose: 0
outputs:
  dir: runs
  save_model: saved_model
  plots: {enabled: false}
"""


def _png(path: Path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(pixels).numpy())


def test_a_savedmodel_run_predicts_a_folder_of_images_decoded_as_it_trained(tmp_path):
    """RGB PNGs of another size, in sub-folders: decoded grey and resized to the run's
    image_size (float32), named in the output; the probability is P(class 1), named so."""
    rng = np.random.default_rng(0)
    for name, scale in (("cat", 0.3), ("dog", 1.0)):
        for i in range(8):
            _png(tmp_path / "data" / name / f"{i}.png", (rng.random((10, 12, 3)) * 255 * scale).astype(np.uint8))
    for name in ("a.png", "sub/b.png", "sub/c.png"):
        _png(tmp_path / "new" / name, (rng.random((10, 12, 3)) * 255).astype(np.uint8))
    (tmp_path / "spec.yaml").write_text(IMAGES.replace("dir: runs", f"dir: {tmp_path / 'runs'}"))
    run_dir = _run(tmp_path / "spec.yaml")
    assert (run_dir / "saved_model").is_dir()

    predictions = predict_file(run_dir, tmp_path / "new", tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "file,class,class_name,probability_1"
    assert [line.split(",")[0] for line in lines[1:]] == ["a.png", "sub/b.png", "sub/c.png"]
    images = [tf.image.resize(tf.io.decode_png((tmp_path / "new" / n).read_bytes(), channels=1), [8, 8])
              for n in ("a.png", "sub/b.png", "sub/c.png")]
    logits = np.asarray(load_model(run_dir)(tf.stack(images) / 255.0))[:, 0]
    probability = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose([float(line.split(",")[3]) for line in lines[1:]], probability, rtol=1e-5)
    classes = (probability >= 0.5).astype(int)
    assert [int(line.split(",")[1]) for line in lines[1:]] == classes.tolist() == predictions.classes.tolist()
    assert [line.split(",")[2] for line in lines[1:]] == [["cat", "dog"][c] for c in classes]


# ------------------------------------------------------------------ a numeric CSV with its label

NUMERIC = """\
version: 1
name: numeric
seed: 0
data:
  train:
    source: {csv: {path: train.csv, label: -1}}
    stages:
      - batch: {batch_size: 8}
model:
  sequential:
    input_shape: [3]
    layers:
      - Dense: {units: 2}
train:
  epochs: 1
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: adam
  verbose: 0
outputs:
  dir: runs
  plots: {enabled: false}
"""


def test_a_headerless_csv_that_still_holds_its_label_column(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).round(3)
    y = (x[:, 0] > 0).astype(int)
    rows = [",".join([*map(str, r), str(label)]) for r, label in zip(x, y)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "spec.yaml").write_text(NUMERIC.replace("dir: runs", f"dir: {tmp_path / 'runs'}"))
    run_dir = _run(tmp_path / "spec.yaml")
    with_label = predict_file(run_dir, tmp_path / "train.csv", tmp_path / "a.csv")
    assert with_label.notes == [f"{tmp_path / 'train.csv'}: the label column -1 is ignored"]
    (tmp_path / "x.csv").write_text("\n".join(",".join(map(str, r)) for r in x) + "\n")
    without = predict_file(run_dir, tmp_path / "x.csv", tmp_path / "b.csv")
    assert without.notes == []
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == "class,probability_0,probability_1"


def test_a_csv_that_does_not_fit_the_run_says_what_the_run_takes_not_how_to_change_its_spec(tmp_path):
    """A finished run's spec cannot change: a CSV of other columns is told the values per row
    the model takes, a gap in a column the run fills nowhere is to be filled in the file."""
    rows = [f"{i / 10},{i % 3},{-i},{i % 2}" for i in range(20)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "spec.yaml").write_text(NUMERIC.replace("dir: runs", f"dir: {tmp_path / 'runs'}"))
    run_dir = _run(tmp_path / "spec.yaml")
    (tmp_path / "wide.csv").write_text("1,2,3,4,5\n6,7,8,9,10\n")
    with pytest.raises(SpecError) as info:
        predict_file(run_dir, tmp_path / "wide.csv", tmp_path / "w.csv")
    assert str(info.value) == (f"{tmp_path / 'wide.csv'}: the run's model takes 3 values per row (input (3,)) "
                               "(or 4 with the label column); wide.csv has 5 columns")
    (tmp_path / "gaps.csv").write_text("1,2,3\n4,,6\n")
    result = pipe("predict", str(run_dir), "gaps.csv", "-o", "g.csv", cwd=tmp_path)
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "missing value in row 2 (line 2), column '1'" in said
    assert "the run declares no fill for column '1': fill the gaps in the file" in said
    assert "fill policy" not in said and "Traceback" not in said


def test_debug_prints_the_traceback_of_a_failed_prediction(tmp_path):
    (tmp_path / "train.csv").write_text("".join(f"{i},{i % 3},{i % 5},{i % 2}\n" for i in range(20)))
    (tmp_path / "spec.yaml").write_text(NUMERIC.replace("dir: runs", f"dir: {tmp_path / 'runs'}"))
    run_dir = _run(tmp_path / "spec.yaml")
    np.save(tmp_path / "rows.npy", np.zeros((2, 3), np.float32))
    (run_dir / "model.keras").write_bytes(b"not a zip archive")  # the run's model broken: a failure, not a mistake
    manifest = json.loads((run_dir / "manifest.json").read_text())  # as the run wrote it: its checksum fits
    manifest["model_sha256"] = hashlib.sha256(b"not a zip archive").hexdigest()
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    plain = pipe("predict", run_dir, tmp_path / "rows.npy", "-o", tmp_path / "p.csv", cwd=tmp_path)
    debug = pipe("predict", run_dir, tmp_path / "rows.npy", "-o", tmp_path / "p.csv", "--debug", cwd=tmp_path)
    assert plain.returncode == debug.returncode != 0
    assert "Traceback (most recent call last)" not in plain.stderr
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]


def test_a_savedmodel_with_several_outputs_predicts_and_evaluates_by_output_name(multi_run, tmp_path):
    """The SavedModel serves its outputs as a list: they are named as the spec names them."""
    folder, keras_run = multi_run
    saved_run = _run(folder / "spec.yaml", "outputs.save_model=saved_model")
    assert (saved_run / "saved_model").is_dir() and not (saved_run / "model.keras").exists()
    predict_file(saved_run, folder / "new.npz", tmp_path / "saved.csv")
    predict_file(keras_run, folder / "new.npz", tmp_path / "keras.csv")
    saved, keras_lines = ((tmp_path / name).read_text().splitlines() for name in ("saved.csv", "keras.csv"))
    assert saved[0] == keras_lines[0]  # item_class, ..., top_probability_1, ink_prediction
    np.testing.assert_allclose([[float(c) for c in line.split(",")] for line in saved[1:]],
                               [[float(c) for c in line.split(",")] for line in keras_lines[1:]], rtol=1e-5)

    metrics = json.loads((saved_run / "metrics.json").read_text())["test"]
    evaluation = evaluate_run(saved_run)
    assert sorted(evaluation.metrics["test"]) == sorted(metrics)
    for key, value in metrics.items():
        assert evaluation.metrics["test"][key] == pytest.approx(value, rel=1e-5), key
    assert sorted(evaluation.confusion) == ["test-item", "test-top"]


def test_a_csv_is_read_with_the_csv_options_of_the_split_that_has_them(tmp_path):
    """Train from a CSV (label column, shape), test from an NPZ: a CSV given to predict takes
    train's CSV options, not the NPZ's (its label column dropped, its rows reshaped)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = (x.sum(-1) > 0).astype(np.int64)
    rows = "\n".join(",".join(f"{v:.6f}" for v in r) + f",{label}" for r, label in zip(x, y))
    (tmp_path / "train.csv").write_text(rows + "\n")
    np.savez(tmp_path / "test.npz", x=x.reshape(-1, 2, 2), y=y)
    (tmp_path / "spec.yaml").write_text(f"""\
version: 1
name: mixed
seed: 1
data:
  train:
    source: {{csv: {{path: train.csv, label: -1, shape: [2, 2]}}}}
    stages: [{{batch: {{batch_size: 16}}}}]
  test:
    source: {{npz: {{path: test.npz, features: x, label: y}}}}
    stages: [{{batch: {{batch_size: 16}}}}]
model: {{sequential: {{input_shape: [2, 2], layers: [{{Flatten: {{}}}}, {{Dense: {{units: 2}}}}]}}}}
train: {{epochs: 1, loss: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}, optimizer: adam}}
outputs: {{dir: {tmp_path / 'runs'}, plots: {{enabled: false}}}}
""")
    run_dir = _run(tmp_path / "spec.yaml")
    predicted = predict_file(run_dir, tmp_path / "train.csv", tmp_path / "out.npy")
    from_npz = predict_file(run_dir, tmp_path / "test.npz", tmp_path / "npz.npy", key="x")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.load(tmp_path / "npz.npy"), rtol=1e-4, atol=1e-5)
    assert predicted.count == from_npz.count == 48


# ------------------------------------------------------------------ a run that decodes images itself

ENCODED = """\
version: 1
name: encoded
seed: 3
data:
  train:
    source:
      tfrecord:
        files: [images.tfrecord]
        features: {png: {dtype: string, shape: []}, label: {dtype: int64, shape: []}}
        label: label
    stages:
      - map: {ops: [{decode_image: {channels: 1}}, {cast: {dtype: float32}}, {scale: {divisor: 255.0}}]}
      - batch: {batch_size: 8}
model:
  sequential:
    input_shape: [12, 12, 1]
    layers: [{Flatten: {}}, {Dense: {units: 3}}]
train: {epochs: 1, loss: {SparseCategoricalCrossentropy: {from_logits: true}}, optimizer: adam}
outputs: {dir: runs, plots: {enabled: false}}
"""


def test_a_run_that_decodes_images_predicts_on_image_files_and_refuses_pixels(tmp_path, monkeypatch):
    """Its map ops decode encoded images: image files go in as their bytes (decoded once, by
    the run's own op), and decoded pixels (an .npy) are refused with what to give instead."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 12, 12, 1)).astype(np.uint8)
    (tmp_path / "pngs").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "images.tfrecord")) as writer:
        for i, image in enumerate(pixels):
            png = tf.io.encode_png(image).numpy()
            (tmp_path / "pngs" / f"{i:02d}.png").write_bytes(png)
            features = {"png": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    (tmp_path / "spec.yaml").write_text(ENCODED)
    run_dir = _run(tmp_path / "spec.yaml")
    result = pipe("predict", str(run_dir), "pngs", "--output", "p.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1, usecols=range(2, 5))
    expected = _softmax(load_model(run_dir).predict(pixels.astype("float32") / 255.0, verbose=0))
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)
    np.save(tmp_path / "x.npy", pixels)
    refused = pipe("predict", str(run_dir), "x.npy", "--output", "q.csv", cwd=tmp_path)
    assert (refused.returncode, refused.stderr) == (1, "x.npy: the run's data.train.stages[0].map.ops[0] decodes "
                                                       "encoded images: give image files (.png, .jpg, .jpeg, .bmp, "
                                                       ".gif) or a folder of them\n")


def test_rows_of_another_size_than_the_model_declares_are_refused(tmp_path, monkeypatch):
    """A model that pools over any size (Conv2D, GlobalAveragePooling2D) would take 5x5 images
    for its 8x8 ones: predict says which shape the model takes instead of predicting."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((32, 8, 8, 1), np.float32), y=rng.integers(0, 2, 32))
    (tmp_path / "spec.yaml").write_text(
        "version: 1\nname: pooled\ndata: {train: {source: {npz: {path: d.npz, features: x, label: y}}, "
        "stages: [{batch: {batch_size: 8}}]}}\n"
        "model: {sequential: {input_shape: [8, 8, 1], layers: [{Conv2D: {filters: 2, kernel_size: 3}}, "
        "{GlobalAveragePooling2D: {}}, {Dense: {units: 2}}]}}\n"
        "train: {epochs: 1, loss: {SparseCategoricalCrossentropy: {from_logits: true}}, optimizer: adam}\n"
        "outputs: {dir: runs, plots: {enabled: false}}\n")
    run_dir = _run(tmp_path / "spec.yaml")
    np.save(tmp_path / "small.npy", rng.random((3, 5, 5, 1), np.float32))
    np.save(tmp_path / "right.npy", rng.random((3, 8, 8, 1), np.float32))
    refused = pipe("predict", str(run_dir), "small.npy", "--output", "p.csv", cwd=tmp_path)
    assert (refused.returncode, refused.stderr) == (
        1, "small.npy: the run's model takes rows of shape (8, 8, 1); the input's rows have shape (5, 5, 1) "
           "(after the run's preprocessing)\n")
    assert not (tmp_path / "p.csv").exists()
    assert pipe("predict", str(run_dir), "right.npy", "--output", "p.csv", cwd=tmp_path).returncode == 0
