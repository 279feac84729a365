"""Ordinary data and models: sorted sources, dict features and labels, tabular CSV with text
and gaps, learned normalization, folders and TFRecords of images, keras.applications
backbones, and the Keras train options people reach for. Real data, kept small."""

from __future__ import annotations

import gzip
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError
from tests.conftest import FASHION_MNIST, REPO

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.data import build_datasets  # noqa: E402
from runner.data.learned import load_learned  # noqa: E402
from runner.data.replay import build_split_from_run  # noqa: E402
from runner.models import build_model  # noqa: E402
from runner.run.pipeline import run_spec  # noqa: E402

# ../shared/data beside the repository (CI), or the project's shared folder (worktrees)
MNIST_5K = next((p for p in (REPO.parent / "shared" / "data" / "mnist" / "mnist_5k.csv.gz",
                             REPO.parents[1] / "shared" / "data" / "mnist" / "mnist_5k.csv.gz") if p.is_file()),
                None)
needs_mnist = pytest.mark.skipif(MNIST_5K is None, reason="needs ../shared/data/mnist/mnist_5k.csv.gz")
needs_fashion = pytest.mark.skipif(not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                   reason="needs Debian's dataset-fashion-mnist")


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def run(path: Path, *overrides):
    return run_spec(load_spec(path, list(overrides)), quiet=True)


def spec_error(path: Path, build) -> str:
    with pytest.raises(SpecError) as caught:
        build(load_spec(path))
    return str(caught.value).split(": ", 1)[1]


@pytest.fixture(scope="session")
def fashion():
    """The first 1,200 Fashion-MNIST test images and labels (uint8), read from the IDX files."""
    if not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    images = np.frombuffer(gzip.decompress((FASHION_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()),
                           np.uint8, offset=16).reshape(-1, 28, 28)[:1200]
    labels = np.frombuffer(gzip.decompress((FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()),
                           np.uint8, offset=8)[:1200].astype(np.int64)
    return images, labels


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------ 1. validation fractions

SORTED_MNIST = """\
    version: 1
    name: sorted
    seed: 1
    data:
      train:
        source: {{csv: {{path: {path}, label: -1, shape: [784], dtype: uint8}}}}
        stages:
          - map: {{ops: [{{scale: {{divisor: 255.0}}}}]}}
          - shuffle: {{buffer_size: all}}
          - batch: {{batch_size: 64}}
          - prefetch: {{}}
      validation: {{fraction: 0.1}}
    model:
      sequential:
        input_shape: [784]
        layers: [{{Dense: {{units: 32, activation: relu}}}}, {{Dense: {{units: 10}}}}]
    train:
      epochs: 2
      loss: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}
      optimizer: adam
      metrics: [accuracy]
"""


@needs_mnist
def test_a_label_sorted_source_split_by_fraction_trains_on_every_class(workdir, capfd):
    path = write(workdir, SORTED_MNIST.format(path=MNIST_5K))
    result = run(path)
    assert result.metrics["validation"]["accuracy"] > 0.7  # chance is 0.1; unshuffled it was 0.0
    assert "warning" not in capfd.readouterr().err


@needs_mnist
def test_an_unshuffled_fraction_of_a_sorted_source_warns_that_it_holds_one_class(workdir, capfd):
    path = write(workdir, SORTED_MNIST.format(path=MNIST_5K).replace(
        "fraction: 0.1}", "fraction: 0.1, shuffle: false}"))
    spec = load_spec(path)
    keras.utils.set_random_seed(1)
    data = build_datasets(spec)
    assert capfd.readouterr().err == (
        "warning: the validation part of the validation fraction holds only class 9 (500 elements); "
        "is the source sorted by label? (shuffle: true spreads the classes)\n")
    labels = np.concatenate([y for _, y in data.validation.as_numpy_iterator()])
    assert set(labels) == {9}


@needs_mnist
def test_a_stratified_fraction_holds_the_same_share_of_every_class(workdir):
    path = write(workdir, SORTED_MNIST.format(path=MNIST_5K).replace(
        "fraction: 0.1}", "fraction: 0.1, stratify: true}"))
    keras.utils.set_random_seed(1)
    data = build_datasets(load_spec(path))
    batches = list(data.validation.as_numpy_iterator())
    labels = np.concatenate([y for _, y in batches])
    assert np.bincount(labels).tolist() == [50] * 10
    # train's map and batch stages are inherited: scaled pixels in batches of 64
    assert batches[0][0].shape == (64, 784) and batches[0][0].max() <= 1.0
    assert data.info["num_examples"] == {"train": 4500, "validation": 500, "test": None}


# ------------------------------------------------- 2. dict features, several outputs

TWO_IN_TWO_OUT = """\
    version: 1
    name: multi
    seed: 2
    data:
      train:
        source: {npz: {path: multi.npz, features: [image, brightness], label: [item, top, ink]}}
        stages:
          - map: {ops: [{scale: {divisor: 255.0, on: image}}, {reshape: {shape: [28, 28, 1], on: image}}]}
          - batch: {batch_size: 100}
      validation: {fraction: 0.2, stratify: false}
    model:
      functional:
        inputs:
          image: {shape: [28, 28, 1]}
          brightness: {shape: [1]}
        layers:
          - {name: conv, layer: {Conv2D: {filters: 8, kernel_size: 3, activation: relu}}, inputs: image}
          - {name: pool, layer: {MaxPooling2D: {pool_size: 4}}, inputs: conv}
          - {name: flat, layer: Flatten, inputs: pool}
          - {name: joined, layer: Concatenate, inputs: [flat, brightness]}
          - {name: hidden, layer: {Dense: {units: 32, activation: relu}}, inputs: joined}
          - {name: item, layer: {Dense: {units: 10}}, inputs: hidden}
          - {name: top, layer: {Dense: {units: 1, activation: sigmoid}}, inputs: hidden}
          - {name: ink, layer: {Dense: {units: 1}}, inputs: hidden}
        outputs: [item, top, ink]
    train:
      loop: fit
      epochs: 5
      loss:
        item: {SparseCategoricalCrossentropy: {from_logits: true}}
        top: binary_crossentropy
        ink: mse
      loss_weights: {item: 1.0, top: 0.5, ink: 2.0}
      optimizer: {Adam: {learning_rate: 0.003}}
      metrics: {item: [accuracy], top: [accuracy], ink: [mae]}
    outputs: {checkpoints: false}
"""


@pytest.fixture(scope="session")
def multi_npz(fashion, tmp_path_factory):
    """Fashion-MNIST as two inputs (image, mean brightness) and three labels: the item (10
    classes), whether it is a top (binary: t-shirt, pullover, coat, shirt) and the ink share."""
    images, labels = fashion
    folder = tmp_path_factory.mktemp("multi")
    brightness = images.reshape(len(images), -1).mean(1, keepdims=True).astype(np.float32) / 255
    ink = (images.reshape(len(images), -1) > 128).mean(1, keepdims=True).astype(np.float32)
    top = np.isin(labels, [0, 2, 4, 6]).astype(np.int64)[:, None]
    np.savez(folder / "multi.npz", image=images, brightness=brightness, item=labels, top=top, ink=ink)
    return folder


@pytest.mark.parametrize("loop, engine", [("fit", "keras"), ("custom", "keras"), ("fit", "fused")])
def test_a_two_input_three_output_model_trains(multi_npz, workdir, loop, engine):
    (workdir / "multi.npz").write_bytes((multi_npz / "multi.npz").read_bytes())
    path = write(workdir, TWO_IN_TWO_OUT.replace("loop: fit", f"loop: {loop}\n      engine: {engine}"))
    result = run(path)
    assert json.loads((result.run_dir / "manifest.json").read_text())["engine"] == engine
    keras.saving.load_model(result.run_dir / "model.keras")  # what pipe evaluate and predict read
    validation = result.metrics["validation"]
    assert validation["item_accuracy"] > 0.4        # ten classes: chance is 0.1
    assert validation["top_accuracy"] > 0.7         # binary
    assert validation["ink_mae"] < 0.2
    history = json.loads((result.run_dir / "history.json").read_text())
    assert {"loss", "item_loss", "top_loss", "ink_loss", "item_accuracy", "top_accuracy", "ink_mae",
            "val_item_accuracy", "val_ink_loss"} <= set(history)
    plots = sorted(p.name for p in result.run_dir.glob("confusion_matrix*.png"))
    assert plots == ["confusion_matrix_item.png", "confusion_matrix_top.png"]  # none for the regression


def test_the_losses_of_several_outputs_follow_loss_weights(multi_npz, workdir):
    """The custom loop's total loss is the weighted sum of the outputs' losses, as in fit."""
    (workdir / "multi.npz").write_bytes((multi_npz / "multi.npz").read_bytes())
    spec = load_spec(write(workdir, TWO_IN_TWO_OUT))
    keras.utils.set_random_seed(2)
    data = build_datasets(spec)
    model = build_model(spec.doc["model"], spec)
    from runner.train.multi_output import resolve_outputs

    loss, _ = resolve_outputs(spec.doc["train"], spec, model, data.train.element_spec)
    x, y = next(iter(data.train))
    prediction = model(x)
    model.compile(loss=loss.per_output, loss_weights=loss.loss_weights, optimizer="adam")
    by_keras = float(model.compute_loss(x, y, prediction))
    ours = float(tf.reduce_mean(loss.call(y, prediction)))
    assert ours == pytest.approx(by_keras, rel=1e-5)


def test_an_op_aimed_at_a_name_that_is_not_a_feature_is_located(multi_npz, workdir):
    (workdir / "multi.npz").write_bytes((multi_npz / "multi.npz").read_bytes())
    path = write(workdir, TWO_IN_TWO_OUT.replace("on: image}", "on: imag}", 1))
    assert spec_error(path, build_datasets) == (
        "data.train.stages[0].map.ops[0].scale.on: no feature or label named 'imag' "
        "(the named features and labels are image, brightness, item, top, ink)")


def test_per_output_keys_must_be_output_names(multi_npz, workdir):
    (workdir / "multi.npz").write_bytes((multi_npz / "multi.npz").read_bytes())
    path = write(workdir, TWO_IN_TWO_OUT.replace("ink: [mae]", "inc: [mae]"))
    assert spec_error(path, run_spec) == "train.metrics.inc: no model output named 'inc' (outputs: item, top, ink)"


# ------------------------------------------------------- 3. tabular CSV, learned statistics

PENGUINS = REPO / "specs" / "data" / "penguins.csv"


def penguins_spec(folder: Path, source: str, stages: str = "[{batch: {batch_size: 64}}]", extra: str = "") -> Path:
    (folder / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    return write(folder, f"""\
        version: 1
        name: penguins
        seed: 5
        data:
          train: {{source: {{csv: {source}}}, stages: {stages}}}
          {extra}
        model: {{sequential: {{layers: [{{Dense: {{units: 3}}}}]}}}}
        train: {{epochs: 1, loss: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}, optimizer: adam}}
        """)


def test_a_missing_value_without_a_fill_policy_names_its_row_and_column(workdir):
    path = penguins_spec(workdir, "{path: penguins.csv, header: true, label: species, "
                                  "categorical: [island, sex]}")
    assert spec_error(path, build_datasets) == (
        f"data.train.source.csv.path: missing value in row 4 (line 5), column 'bill_length_mm' of "
        f"{workdir / 'penguins.csv'} (2 in that column) (declare a fill policy, e.g. fill: {{bill_length_mm: mean}})")


@pytest.mark.parametrize("cell, said", [
    ("NaN", "missing value in row 3 (line 4), column 'b' of {file} (1 in that column) (declare a fill policy, "
            "e.g. fill: {{b: mean}})"),
    ("inf", "row 3 (line 4), column 'b' of {file} is not a finite number (write it as a missing value "
            "(missing_values) and declare a fill policy, or fix the row)")])
def test_a_number_csv_with_nan_or_inf_says_which_cell_whether_or_not_features_are_listed(workdir, cell, said):
    """np.loadtxt reads NaN and inf as numbers: they are missing values (or no numbers), as in a table."""
    rows = ["a,b,label", "0.1,0.2,0", "0.3,0.4,1", f"0.5,{cell},0", "0.7,0.8,1"]
    (workdir / "numbers.csv").write_text("\n".join(rows) + "\n")
    for source in ("{path: numbers.csv, header: true, label: label}",
                   "{path: numbers.csv, header: true, label: label, features: [a, b]}"):
        path = penguins_spec(workdir, source)
        assert spec_error(path, build_datasets) == "data.train.source.csv.path: " + said.format(
            file=workdir / "numbers.csv")


def test_a_text_column_that_is_not_categorical_is_named(workdir):
    path = penguins_spec(workdir, "{path: penguins.csv, header: true, label: species, fill: mean}")
    assert spec_error(path, build_datasets) == (
        f"data.train.source.csv.path: row 1 (line 2), column 'island' of {workdir / 'penguins.csv'} holds "
        "text, not a number (declare it categorical (categorical: {island: one_hot}), keep it as strings "
        "(text: [island]) or leave it out of features)")


def test_text_and_missing_columns_become_features_learned_from_train(workdir):
    path = penguins_spec(
        workdir, "{path: penguins.csv, header: true, label: species, features: [island, bill_length_mm, sex], "
                 "categorical: {island: one_hot, sex: int}, fill: {bill_length_mm: median, sex: unknown}}",
        extra="validation: {fraction: 0.25}")
    keras.utils.set_random_seed(5)
    data = build_datasets(load_spec(path))
    learned = data.learned.to_json()
    assert sorted(learned["columns"]["island"]["vocabulary"]) == ["Biscoe", "Dream", "Torgersen"]
    assert sorted(learned["columns"]["sex"]["vocabulary"]) == ["female", "male", "unknown"]
    assert learned["labels"] == {"species": {"vocabulary": ["Adelie", "Chinstrap", "Gentoo"]}}
    assert data.info["class_names"] == ["Adelie", "Chinstrap", "Gentoo"] and data.info["num_classes"] == 3
    x, y = next(iter(data.train.unbatch()))
    # island one-hot (3 + out-of-vocabulary index 0), bill length, sex as an integer index
    assert x.shape == (6,) and x.dtype == tf.float32 and y.dtype == tf.int64
    features = np.concatenate([b[0] for b in data.train.as_numpy_iterator()])
    assert np.all(features[:, :4].sum(1) == 1) and set(np.unique(features[:, 5])) <= {1.0, 2.0, 3.0}
    train_bills = features[:, 4]
    assert not np.isnan(train_bills).any() and 32 < np.median(train_bills) < 50


def test_normalize_learns_mean_and_variance_from_the_training_split_only(workdir):
    path = penguins_spec(
        workdir, "{path: penguins.csv, header: true, label: species, "
                 "features: [bill_length_mm, flipper_length_mm, body_mass_g], fill: mean}",
        stages="[{map: {ops: [{normalize: {}}]}}, {batch: {batch_size: 400}}]",
        extra="validation: {fraction: 0.3}")
    keras.utils.set_random_seed(5)
    data = build_datasets(load_spec(path))
    (stats,) = data.learned.normalize
    train = next(iter(data.train))[0].numpy()
    np.testing.assert_allclose(train.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(0), 1.0, atol=1e-4)
    assert 190 < stats["mean"][1] < 210 and 3500 < stats["mean"][2] < 5000  # flipper mm, body mass g
    validation = next(iter(data.validation))[0].numpy()  # train's statistics, not its own
    assert np.abs(validation.mean(0)).max() > 1e-3 and np.abs(validation.mean(0)).max() < 0.5


def test_csv_columns_grouped_into_named_features_and_several_labels(workdir):
    """features: {name: [columns]} gives a dict of features; label: [columns] a dict of labels;
    normalize aims at one of them with on:."""
    path = penguins_spec(
        workdir, "{path: penguins.csv, header: true, label: [species, year], fill: most_frequent, "
                 "features: {size: [bill_length_mm, 3], place: [island]}, categorical: {island: int}}",
        stages="[{map: {ops: [{normalize: {on: size}}, {scale: {factor: 0.001, on: year}}]}}, "
               "{batch: {batch_size: 344}}]")
    keras.utils.set_random_seed(5)
    data = build_datasets(load_spec(path))
    features, labels = next(iter(data.train))
    assert set(features) == {"size", "place"} and set(labels) == {"species", "year"}
    assert features["size"].shape == (344, 2) and features["place"].dtype == tf.int64
    np.testing.assert_allclose(features["size"].numpy().mean(0), 0.0, atol=1e-4)
    assert set(np.unique(features["place"].numpy())) == {1, 2, 3}  # StringLookup indices; 0: unseen islands
    assert labels["species"].dtype == tf.int64 and 2.007 <= float(tf.reduce_mean(labels["year"])) <= 2.009


def test_shuffle_and_stratify_belong_to_a_fraction(workdir):
    from runner.spec.errors import SpecErrors

    path = penguins_spec(workdir, "{path: penguins.csv, header: true, label: species}",
                         extra="validation: {source: {csv: {path: penguins.csv}}, stratify: true}")
    with pytest.raises(SpecErrors) as caught:
        load_spec(path)
    assert str(caught.value).endswith("data.validation.stratify: stratify applies to a validation fraction "
                                      "(a validation source is read as it is)")


def test_the_tabular_spec_saves_its_preprocessing_and_a_test_split_rebuilds_from_it(workdir):
    spec_path = REPO / "specs" / "tabular.yaml"
    result = run_spec(load_spec(spec_path, ["train.epochs=3", f"outputs.dir={workdir}"]), quiet=True)
    saved = json.loads((result.run_dir / "preprocessing.json").read_text())
    assert saved["labels"]["species"]["vocabulary"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert saved["columns"]["body_mass_g"]["fill"] == 4000.0  # the median of train's masses
    assert len(saved["normalize"][0]["mean"]) == 11            # 4 island, 4 numbers, 3 sex
    # The whole table as a test split, preprocessed with the run's statistics
    spec = load_spec(spec_path, ["data.test.source.csv.path=data/penguins.csv",
                                 "data.test.source.csv.header=true"])
    spec.set_value(("data", "test"), {"source": spec.doc["data"]["train"]["source"],
                                      "stages": [{"map": {"ops": [{"normalize": {}}]}}, {"batch": {"batch_size": 400}}]})
    test = build_split_from_run(spec, result.run_dir)
    x, y = next(iter(test))
    assert x.shape == (344, 11)
    mean = np.asarray(saved["normalize"][0]["mean"])
    std = np.sqrt(np.asarray(saved["normalize"][0]["variance"]))
    std[std < 1e-7] = 1.0
    raw = x.numpy() * std + mean
    assert np.allclose(raw[:, 1:4].sum(1), 1.0, atol=1e-4)  # un-normalized: one-hot islands again
    assert load_learned(result.run_dir).frozen
    model = keras.saving.load_model(result.run_dir / "model.keras")
    accuracy = np.mean(np.argmax(model.predict(x, verbose=0), -1) == y.numpy())
    assert accuracy > 0.8


# ------------------------------------------------------------------------------ 4. images

CLASSES = {0: "t-shirt", 1: "trouser", 7: "sneaker"}


@pytest.fixture(scope="session")
def png_folder(fashion, tmp_path_factory):
    """40 Fashion-MNIST PNGs in each of three class folders, written with tf.io.encode_png."""
    images, labels = fashion
    folder = tmp_path_factory.mktemp("fashion_png")
    for label, name in CLASSES.items():
        (folder / name).mkdir()
        for i, index in enumerate(np.flatnonzero(labels == label)[:40]):
            png = tf.io.encode_png(images[index][:, :, None]).numpy()
            (folder / name / f"{i:03d}.png").write_bytes(png)
    return folder


IMAGE_TRAIN = """\
train:
  epochs: 6
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.003}}
  metrics: [accuracy]
outputs: {checkpoints: false}
"""


def test_an_image_folder_of_pngs_trains_with_augmentation(png_folder, workdir):
    path = write(workdir, f"""\
version: 1
name: folder
seed: 4
data:
  train:
    source: {{image_folder: {{directory: {png_folder}, color_mode: grayscale}}}}
    stages:
      - map:
          ops:
            - center_crop: {{size: [24, 24]}}
            - augment: {{layers: [{{RandomFlip: {{mode: horizontal, seed: 1}}}}]}}
      - shuffle: {{buffer_size: all}}
      - batch: {{batch_size: 16}}
  validation: {{fraction: 0.25}}
model:
  sequential:
    input_shape: [24, 24, 1]
    layers:
      - Rescaling: {{scale: 0.00392156862745098}}   # no offset: built through its constructor
      - Conv2D: {{filters: 8, kernel_size: 3, activation: relu}}
      - MaxPooling2D: {{pool_size: 2}}
      - Flatten: {{}}
      - Dense: {{units: "${{data.num_classes}}"}}
""" + IMAGE_TRAIN)
    keras.utils.set_random_seed(4)
    data = build_datasets(load_spec(path))
    assert data.info["class_names"] == ["sneaker", "t-shirt", "trouser"]  # alphabetical, as Keras
    assert data.info["num_examples"] == {"train": 90, "validation": 30, "test": None}
    images, labels = next(iter(data.validation))
    assert images.shape[1:] == (24, 24, 1) and images.dtype == tf.uint8
    resized = build_datasets(load_spec(path, ["data.train.source.image_folder.image_size=[20, 20]",
                                              "data.train.stages.0.map.ops.0.center_crop.size=[16, 16]"]))
    images, labels = next(iter(resized.train))
    assert images.shape == (16, 16, 16, 1) and images.dtype == tf.float32  # resized as Keras does
    result = run(path)
    assert result.metrics["validation"]["accuracy"] > 0.8  # three classes: chance is 1/3
    assert (result.run_dir / "confusion_matrix.png").is_file()


def test_a_tfrecord_of_encoded_images_is_decoded_resized_and_trained(fashion, workdir):
    images, labels = fashion
    with tf.io.TFRecordWriter(str(workdir / "fashion.tfrecord")) as writer:
        for image, label in zip(images[:400], labels[:400]):
            png = tf.io.encode_png(image[:, :, None]).numpy()
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                "raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}))
            writer.write(example.SerializeToString())
    path = write(workdir, """\
version: 1
name: records
seed: 4
data:
  train:
    source:
      tfrecord:
        files: [fashion.tfrecord]
        features: {image: {dtype: string}, raw: {dtype: string}, label: {dtype: int64}}
        label: label
    stages:
      - map:
          ops:
            - decode_image: {channels: 1, on: image}     # PNG bytes
            - resize: {size: [24, 24], on: image}
            - decode_raw: {shape: [28, 28, 1], on: raw}  # an array's tobytes()
            - center_crop: {size: [24, 24], on: raw}
      - batch: {batch_size: 32}
  validation: {fraction: 0.2}
model:
  functional:
    inputs: {image: {shape: [24, 24, 1]}, raw: {shape: [24, 24, 1], dtype: uint8}}
    layers:
      - {name: scaled, layer: {Rescaling: {scale: 0.00392156862745098}}, inputs: image}
      - {name: conv, layer: {Conv2D: {filters: 8, kernel_size: 3, activation: relu}}, inputs: scaled}
      - {name: pool, layer: {MaxPooling2D: {pool_size: 2}}, inputs: conv}
      - {name: flat, layer: Flatten, inputs: pool}
      - {name: raw_scaled, layer: {Rescaling: {scale: 0.00392156862745098}}, inputs: raw}
      - {name: raw_flat, layer: Flatten, inputs: raw_scaled}
      - {name: both, layer: Concatenate, inputs: [flat, raw_flat]}
      - {name: logits, layer: {Dense: {units: "${data.num_classes}"}}, inputs: both}
    outputs: logits
""" + IMAGE_TRAIN)
    keras.utils.set_random_seed(4)
    data = build_datasets(load_spec(path))
    features, _ = next(iter(data.train))
    assert features["image"].shape == (32, 24, 24, 1) and features["image"].dtype == tf.float32
    raw = features["raw"].numpy()
    assert raw.dtype == np.uint8 and raw.shape == (32, 24, 24, 1)
    # the raw bytes decoded and centrally cropped: the middle 24 x 24 pixels of one of the images
    assert any(np.array_equal(raw[0, :, :, 0], image[2:26, 2:26]) for image in images[:400])
    result = run(path)
    assert result.metrics["validation"]["accuracy"] > 0.5  # ten classes: chance is 0.1


# ------------------------------------------------------------------------------ 5. models

def backbone_spec(folder: Path, backbone: str, steps: str = "steps_per_epoch: 1") -> Path:
    rng = np.random.default_rng(0)
    np.savez(folder / "rgb.npz", x=rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32),
             y=rng.integers(0, 4, 16))
    return write(folder, f"""\
        version: 1
        name: backbone
        seed: 6
        data:
          train:
            source: {{npz: {{path: rgb.npz, features: x, label: y}}}}
            stages: [{{batch: {{batch_size: 8}}}}]
        model:
          sequential:
            input_shape: [32, 32, 3]
            layers:
              - {backbone}
              - Dense: {{units: 4}}
        train:
          epochs: 1
          {steps}
          loss: {{SparseCategoricalCrossentropy: {{from_logits: true}}}}
          optimizer: adam
        outputs: {{checkpoints: false, plots: {{enabled: false}}}}
        """)


def test_a_keras_applications_backbone_without_weights_trains_one_step(workdir):
    path = backbone_spec(workdir, "MobileNetV3Small: {weights: null, include_top: false, input_shape: [32, 32, 3], "
                                  "pooling: avg, trainable_layers: 5}")
    spec = load_spec(path)
    model = build_model(spec.doc["model"], spec)
    backbone = model.layers[0]
    assert backbone.name.startswith("MobileNetV3Small")
    assert [layer.trainable for layer in backbone.layers[-6:]] == [False, True, True, True, True, True]
    result = run(path)
    assert np.isfinite(result.metrics["train"]["loss"])
    assert json.loads((result.run_dir / "history.json").read_text())["loss"]  # one epoch of one step


def test_a_backbone_reads_a_local_weights_file_and_can_be_frozen(workdir):
    source = keras.applications.MobileNetV3Small(weights=None, include_top=False, input_shape=(32, 32, 3),
                                                 pooling="avg")
    source.save_weights(workdir / "backbone.weights.h5")
    path = backbone_spec(workdir, "MobileNetV3Small: {weights: backbone.weights.h5, include_top: false, "
                                  "input_shape: [32, 32, 3], pooling: avg, trainable: false}")
    spec = load_spec(path)
    backbone = build_model(spec.doc["model"], spec).layers[0]
    assert not backbone.trainable and backbone.trainable_weights == []
    for ours, theirs in zip(backbone.weights, source.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    missing = backbone_spec(workdir, "MobileNetV3Small: {weights: nowhere.weights.h5, include_top: false}")
    assert spec_error(missing, lambda s: build_model(s.doc["model"], s)) == (
        f"model.sequential.layers[0].MobileNetV3Small.weights: weights file not found: {workdir / 'nowhere.weights.h5'}")


def test_an_unknown_backbone_suggests_the_keras_applications_name(workdir):
    path = backbone_spec(workdir, "MobileNetV3Smal: {weights: null}")
    assert spec_error(path, lambda s: build_model(s.doc["model"], s)) == (
        "model.sequential.layers[0]: unknown layer 'MobileNetV3Smal' (did you mean 'MobileNetV3Small'?)")


def test_layers_are_built_through_their_constructor_so_defaults_apply(workdir):
    path = backbone_spec(workdir, "Rescaling: {scale: 0.5}")
    spec = load_spec(path)
    rescaling = build_model(spec.doc["model"], spec).layers[0]
    assert (rescaling.scale, rescaling.offset) == (0.5, 0.0)


def test_mixed_precision_is_refused_for_a_module_model(workdir):
    from runner.spec.errors import SpecErrors

    path = write(workdir, """\
        version: 1
        name: module
        data: {train: {source: {synthetic: {x: {linspace: {start: 0, stop: 1, num: 8}}, y: {linear: {w: 1, b: 0}}}}}}
        model: {module: {linear: {}}}
        train: {loop: custom, epochs: 1, loss: mse, optimizer: sgd}
        device: {mixed_precision: mixed_bfloat16}
        """)
    with pytest.raises(SpecErrors) as caught:
        load_spec(path)
    assert [str(e) for e in caught.value.errors] == [
        f"{path}:6:27: device.mixed_precision: mixed_bfloat16 applies to Keras models (their layers follow the "
        "Keras dtype policy); a tf.Module model keeps float32 variables and computes in float32: remove "
        "device.mixed_precision or use a Keras model"]


# ------------------------------------------------------------------------ 6. train options

def regression_spec(folder: Path, train: str, loop: str = "fit", lr: float = 0.1) -> Path:
    return write(folder, f"""\
        version: 1
        name: options
        seed: 8
        data:
          train:
            source: {{synthetic: {{x: {{uniform: {{low: -3, high: 3, num: 64}}}}, y: {{linear: {{w: 2.0, b: 1.0}}}}}}}}
            stages: [{{batch: {{batch_size: 16}}}}]
          validation:
            source: {{synthetic: {{x: {{linspace: {{start: -3, stop: 3, num: 16}}}}, y: {{linear: {{w: 2.0, b: 1.0}}}}}}}}
            stages: [{{batch: {{batch_size: 16}}}}]
        model:
          sequential:
            input_shape: [1]
            layers: [{{Dense: {{units: 1, kernel_initializer: zeros}}}}]
        train:
          loop: {loop}
          loss: mse
          optimizer: {{SGD: {{learning_rate: {lr}}}}}
          {textwrap.indent(textwrap.dedent(train), "          ").strip()}
        outputs: {{checkpoints: false}}
        """)


def test_steps_per_execution_initial_epoch_and_validation_freq(workdir):
    path = regression_spec(workdir, """\
        epochs: 5
        initial_epoch: 1
        steps_per_execution: 2
        validation_freq: 2
    """)
    result = run(path)
    history = json.loads((result.run_dir / "history.json").read_text())
    assert len(history["loss"]) == 4                        # epochs 2..5
    assert [v is None for v in history["val_loss"]] == [False, True, False, True]  # epochs 2 and 4
    rows = (result.run_dir / "history.csv").read_text().splitlines()
    assert rows[0].split(",") == ["epoch", "loss", "val_loss"] and rows[2].endswith(",")
    model = keras.saving.load_model(result.run_dir / "model.keras")
    assert model.steps_per_execution == 2


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_clipnorm_in_the_optimizer_bounds_each_update(workdir, loop):
    """SGD(learning_rate=1, clipnorm=0.01): each variable moves by at most 0.01 per step."""
    path = regression_spec(workdir, "epochs: 1\nsteps_per_epoch: 1", loop=loop, lr=1.0)
    path.write_text(path.read_text().replace("{SGD: {learning_rate: 1.0}}", "{SGD: {learning_rate: 1.0, clipnorm: 0.01}}"))
    result = run(path)
    model = keras.saving.load_model(result.run_dir / "model.keras")
    kernel, bias = (np.linalg.norm(w) for w in model.get_weights())  # both started at zero
    assert 0.009 < kernel <= 0.0100001 and 0.0 < bias <= 0.0100001


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_early_stopping_restored_weights_are_the_final_metrics(workdir, loop):
    """A learning rate that diverges: epoch 1 is the best; its weights and metrics are reported."""
    path = regression_spec(workdir, """\
        epochs: 6
        callbacks: [{EarlyStopping: {monitor: loss, patience: 2, restore_best_weights: true}}]
    """, loop=loop, lr=0.6)
    result = run(path)
    history = json.loads((result.run_dir / "history.json").read_text())
    assert len(history["loss"]) == 3 and history["loss"][0] < history["loss"][1] < history["loss"][2]
    assert result.metrics["train"]["loss"] == history["loss"][0]
    assert result.metrics["validation"]["loss"] == pytest.approx(history["val_loss"][0], rel=1e-5)


def test_a_tfrecord_yields_several_named_labels(workdir):
    with tf.io.TFRecordWriter(str(workdir / "two.tfrecord")) as writer:
        for i in range(6):
            example = tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i, -i])),
                "kind": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3])),
                "size": tf.train.Feature(float_list=tf.train.FloatList(value=[i / 2]))}))
            writer.write(example.SerializeToString())
    path = write(workdir, """\
        version: 1
        name: two_labels
        data:
          train:
            source:
              tfrecord:
                files: [two.tfrecord]
                features: {x: {dtype: float32, shape: [2]}, kind: {dtype: int64}, size: {dtype: float32}}
                label: [kind, size]
            stages: [{batch: {batch_size: 6}}]
        model: {sequential: {layers: [{Dense: {units: 1}}]}}
        train: {epochs: 1, loss: mse, optimizer: adam}
        """)
    features, labels = next(iter(build_datasets(load_spec(path)).train))
    assert features.shape == (6, 2) and set(labels) == {"kind", "size"}
    assert labels["kind"].numpy().tolist() == [0, 1, 2, 0, 1, 2] and labels["size"].numpy()[-1] == 2.5
