"""The data side of the tutorials' grammar: float targets, time windows, text, values from the data."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from runner.spec import load_spec
from runner.spec.errors import SpecError

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.data import build_datasets  # noqa: E402

TAIL = """
model: {sequential: {layers: [Flatten]}}
train: {epochs: 1, loss: mse, optimizer: adam}
"""


def load(write_spec, data: str, tail: str = TAIL):
    head = "version: 1\nname: t\nseed: 7\n"
    return load_spec(write_spec(head + "data:\n" + textwrap.indent(textwrap.dedent(data), "  ") + tail))


def build(write_spec, data: str, tail: str = TAIL):
    spec = load(write_spec, data, tail)
    keras.utils.set_random_seed(7)
    return build_datasets(spec)


def error_of(write_spec, data: str) -> str:
    spec = load(write_spec, data)
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    return str(caught.value).split(": ", 1)[1]


def batches(dataset):
    """Every batch of a dataset as numpy, concatenated: (x, y) or x."""
    parts = list(dataset.as_numpy_iterator())
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate(parts)


# --- float targets stay float ---------------------------------------------------------------

def test_float_targets_written_as_whole_numbers_stay_float(write_spec, tmp_path):
    (tmp_path / "d.csv").write_text("a,mpg\n1,18.0\n2,15.0\n3,16.5\n4,2\n")
    data = build(write_spec, "train: {source: {csv: {path: d.csv, header: true, label: mpg}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert [float(y) for _, y in data.train.as_numpy_iterator()] == [18.0, 15.0, 16.5, 2.0]
    assert data.info["num_classes"] is None
    (tmp_path / "w.csv").write_text("a,mpg\n1,18.0\n2,15.0\n3,16.0\n")  # every value whole, written as floats
    data = build(write_spec, "train: {source: {csv: {path: w.csv, header: true, label: mpg}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert data.info["num_classes"] is None


def test_float_targets_in_a_tabular_csv_and_label_dtype(write_spec, tmp_path):
    (tmp_path / "d.csv").write_text("a,kind,y\n1,x,3.0\n2,z,4.0\n3,x,1\n")
    data = build(write_spec, "train: {source: {csv: {path: d.csv, header: true, label: y, categorical: [kind]}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert data.info["num_classes"] is None
    (tmp_path / "i.csv").write_text("a,y\n1,3\n2,4\n3,1\n")  # integers, declared float
    data = build(write_spec, "train: {source: {csv: {path: i.csv, header: true, label: y, label_dtype: float32}}}")
    assert data.train.element_spec[1].dtype == tf.float32
    assert [float(y) for _, y in data.train.as_numpy_iterator()] == [3.0, 4.0, 1.0]
    data = build(write_spec, "train: {source: {csv: {path: i.csv, header: true, label: y}}}")
    assert data.train.element_spec[1].dtype == tf.int64
    assert data.info["num_classes"] == 5


def test_plan_counts_no_classes_of_float_targets():
    from runner.commands.planning import describe_split

    targets = tf.data.Dataset.from_tensor_slices((np.zeros((6, 2), np.float32),
                                                  np.array([18, 15, 16, 18, 3, 2], np.float32))).batch(3)
    info, _ = describe_split(targets, 6)
    assert "class_counts" not in info
    binary = tf.data.Dataset.from_tensor_slices((np.zeros((4, 2), np.float32),
                                                 np.array([0, 1, 1, 1], np.float32))).batch(4)
    info, _ = describe_split(binary, 4)
    assert info["class_counts"]["counts"] == {0: 1, 1: 3}


# --- time windows -----------------------------------------------------------------------------

SERIES = np.arange(40, dtype=np.float32).reshape(20, 2) * np.array([1, 10], np.float32)


@pytest.mark.parametrize("length,stride,rate,horizon", [(3, 1, 1, 1), (4, 2, 1, 3), (3, 3, 2, 1), (5, 1, 3, 2)])
def test_windows_equal_timeseries_dataset_from_array(write_spec, tmp_path, length, stride, rate, horizon):
    np.save(tmp_path / "x.npy", SERIES)
    data = build(write_spec, f"""
        train:
          source: {{npy: {{features: x.npy}}}}
          stages:
            - window: {{length: {length}, stride: {stride}, sampling_rate: {rate}, horizon: {horizon}}}
            - batch: {{batch_size: 4}}
    """)
    x, y = batches(data.train)
    delay = (length - 1) * rate + horizon
    expected = keras.utils.timeseries_dataset_from_array(
        SERIES[:-horizon], SERIES[delay:], sequence_length=length, sequence_stride=stride,
        sampling_rate=rate, batch_size=4)
    ex, ey = batches(expected)
    assert x.shape == ex.shape and y.shape == ey.shape
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
    assert int(data.train.cardinality()) == int(expected.cardinality())


def test_windows_of_a_label_column_and_horizon_zero(write_spec, tmp_path):
    rows = "\n".join(f"{t},{t * 10},{t % 3}" for t in range(12))
    (tmp_path / "s.csv").write_text("t,u,y\n" + rows + "\n")
    data = build(write_spec, """
        train:
          source: {csv: {path: s.csv, header: true, label: y, label_dtype: float32}}
          stages: [{window: {length: 4, horizon: 0}}]
    """)
    elements = list(data.train.as_numpy_iterator())
    assert len(elements) == 9
    np.testing.assert_array_equal(elements[2][0], [[2, 20], [3, 30], [4, 40], [5, 50]])
    assert elements[2][1] == 5 % 3  # the label of the window's last step
    expected = keras.utils.timeseries_dataset_from_array(
        np.array([[t, t * 10] for t in range(12)], np.float32), np.array([t % 3 for t in range(3, 12)], np.float32),
        sequence_length=4, batch_size=100)
    ex, ey = batches(expected)
    np.testing.assert_array_equal(np.stack([e[0] for e in elements]), ex)
    np.testing.assert_array_equal([e[1] for e in elements], ey)


def test_chronological_fractions_keep_windows_inside_their_split(write_spec, tmp_path):
    series = np.arange(100, dtype=np.float32)[:, None]
    np.save(tmp_path / "x.npy", series)
    data = build(write_spec, """
        train:
          source: {npy: {features: x.npy}}
          stages: [{window: {length: 5}}, {batch: {batch_size: 8}}]
        validation: {fraction: 0.2, shuffle: false}
        test: {fraction: 0.1, shuffle: false}
    """)
    assert data.info["num_examples"] == {"train": 70, "validation": 20, "test": 10}
    for dataset, first, last in ((data.train, 0, 69), (data.validation, 70, 89), (data.test, 90, 99)):
        x, y = batches(dataset)
        assert x.min() == first and y.max() == last  # inputs and targets within the split's steps
        assert len(x) == (last - first + 1) - 5
        np.testing.assert_array_equal(x[:, 1:, 0], x[:, :-1, 0] + 1)  # contiguous, in order


def test_window_mistakes(write_spec, tmp_path):
    from runner.spec.errors import SpecErrors

    np.save(tmp_path / "x.npy", SERIES)
    with pytest.raises(SpecErrors) as caught:
        load(write_spec, """
            train:
              source: {npy: {features: x.npy}}
              stages: [{batch: {batch_size: 2}}, {window: {length: 3, targets: next, horizon: 0}}]
            validation: {fraction: 0.2}
            test: {fraction: 0.1, shuffle: false, stratify: true}
        """)
    shown = [line.split(": ", 1)[1] for line in str(caught.value).splitlines()]
    assert shown == [
        "data.train.stages[1].window: window takes the time steps in order, one per element, but batch comes "
        "before it: put window before batch",
        "data.train.stages[1].window.horizon: targets: next needs a horizon of at least 1 step (0 is the window's "
        "own last step)",
        "data.validation.fraction: train's stages make windows of a series: hold out the series' last steps in "
        "order, so that no window crosses into validation (set data.validation.shuffle: false)",
        "data.test.stratify: train's stages make windows of a series: a test fraction is the series' last steps, "
        "in order, not a stratified sample",
    ]
    assert error_of(write_spec, """
        train:
          source: {npy: {features: x.npy}}
          stages: [{window: {length: 3, targets: label}}]
    """) == ("data.train.stages[0].window.targets: targets: label takes each step's label, but the elements have no "
             "label (use targets: next, or give the source a label column)")


# --- text -------------------------------------------------------------------------------------

@pytest.fixture
def text_corpus(tmp_path):
    """A folder per class of .txt files, as scripts/make_fortunes_corpus.py writes them."""
    texts = {"computers": ["Real programmers use vi.", "It works on my machine."],
             "food": ["Eat dessert first.", "Garlic: the ketchup of intellectuals.", "Soup of the day: tea."]}
    for name, items in texts.items():
        (tmp_path / "corpus" / name).mkdir(parents=True)
        for i, text in enumerate(items):
            (tmp_path / "corpus" / name / f"{i:04d}.txt").write_text(text)
    (tmp_path / "corpus" / "food" / "notes.md").write_text("not a text of the corpus")
    return tmp_path / "corpus"


def test_text_folder_yields_strings_and_folder_labels(write_spec, text_corpus):
    data = build(write_spec, "train: {source: {text_folder: {directory: corpus}}}")
    assert data.train.element_spec == (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64))
    elements = list(data.train.as_numpy_iterator())
    assert [(t.decode(), int(y)) for t, y in elements] == [
        ("Real programmers use vi.", 0), ("It works on my machine.", 0), ("Eat dessert first.", 1),
        ("Garlic: the ketchup of intellectuals.", 1), ("Soup of the day: tea.", 1)]
    assert data.info["num_classes"] == 2 and data.info["class_names"] == ["computers", "food"]
    expected = keras.utils.text_dataset_from_directory(text_corpus, batch_size=None, shuffle=False)
    assert sorted((t, int(y)) for t, y in expected.as_numpy_iterator()) == sorted(
        (t, int(y)) for t, y in elements)


def test_text_folder_options_and_mistakes(write_spec, text_corpus):
    data = build(write_spec, """
        train: {source: {text_folder: {directory: corpus, class_names: [food], max_length: 4}}}
        validation: {fraction: 0.34, stratify: true}
    """)
    train = [t.decode() for t, _ in data.train.as_numpy_iterator()]
    validation = [(t.decode(), int(y)) for t, y in data.validation.as_numpy_iterator()]
    assert len(train) == 2 and len(validation) == 1 and validation[0][1] == 0
    assert sorted(train + [validation[0][0]]) == ["Eat ", "Garl", "Soup"]
    assert error_of(write_spec, "train: {source: {text_folder: {directory: corpus, class_names: [art]}}}") == (
        f"data.train.source.text_folder.class_names: no sub-folder 'art' in {text_corpus}")


def test_csv_text_columns_are_strings(write_spec, tmp_path):
    (tmp_path / "r.csv").write_text('review,stars,liked\n"Great, really great",5,1\nMeh,2,0\n,4,1\n')
    data = build(write_spec, """
        train: {source: {csv: {path: r.csv, header: true, label: liked, features: [review], text: [review],
                               fill: {review: "(none)"}}}}
    """)
    assert data.train.element_spec[0] == tf.TensorSpec([], tf.string)
    assert [(t.decode(), int(y)) for t, y in data.train.as_numpy_iterator()] == [
        ("Great, really great", 1), ("Meh", 0), ("(none)", 1)]
    data = build(write_spec, """
        train: {source: {csv: {path: r.csv, header: true, label: liked, features: {review: [review], stars: [stars]},
                               text: [review], fill: {review: ""}}}}
    """)
    features, _ = next(data.train.as_numpy_iterator())
    assert features["review"] == b"Great, really great" and features["stars"].tolist() == [5.0]
    assert error_of(write_spec, "train: {source: {csv: {path: r.csv, header: true, label: liked, text: [review], "
                                "fill: most_frequent}}}") == (
        "data.train.source.csv.text: the text column 'review' is kept as strings, so it cannot join other columns "
        "in one feature (review, stars): make it the only feature (features: [review]) or give it a feature of its "
        "own (features: {review: [review], ...})")
    (tmp_path / "r2.csv").write_text("review,liked\nGood,1\nBad,0\n")
    assert error_of(write_spec, "train: {source: {csv: {path: r2.csv, header: true, label: liked}}}") == (
        f"data.train.source.csv.path: row 1 (line 2), column 'review' of {tmp_path / 'r2.csv'} holds text, not a "
        "number (declare it categorical (categorical: {review: one_hot}), keep it as strings (text: [review]) or "
        "leave it out of features)")


def test_forecasting_example_windows_are_the_hand_written_programs(tmp_path):
    from tests.conftest import REPO

    spec = load_spec(REPO / "specs" / "forecasting.yaml")
    keras.utils.set_random_seed(7)
    data = build_datasets(spec)
    assert data.info["num_examples"] == {"train": 1599, "validation": 457, "test": 228}
    values = np.loadtxt(REPO / "specs" / "data" / "co2_weekly.csv", delimiter=",", skiprows=1, usecols=1,
                        dtype=np.float32)[:, None]
    train, test = values[:1599], values[-228:]
    test = (test - train.mean()) / train.std()
    x, y = batches(data.test)
    expected = keras.utils.timeseries_dataset_from_array(test[:-1], test[52:], sequence_length=52, batch_size=32)
    ex, ey = batches(expected)
    assert x.shape == ex.shape == (176, 52, 1)
    np.testing.assert_allclose(x, ex, atol=1e-5)
    np.testing.assert_allclose(y, ey, atol=1e-5)
    naive = float(np.mean(np.abs(x[:, -1, 0] - y[:, 0])))
    assert naive == pytest.approx(0.0372, abs=1e-4)  # the figure the example spec beats


# --- values from the data: balanced class weights, a prior output bias --------------------------

IMBALANCED = "\n".join(f"{i},{i % 7},{0 if i < 12 else 1 if i < 18 else 2}" for i in range(20))  # 12/6/2
PRIOR_MODEL = """
model: {sequential: {layers: [{Dense: {units: UNITS, bias_initializer: prior}}]}}
train: {epochs: 1, loss: LOSS, optimizer: adam, class_weight: balanced}
"""


def test_balanced_weights_and_prior_bias_come_from_the_train_split(write_spec, tmp_path):
    from runner.models.build import build_model
    from runner.spec.metadata import substitute_metadata

    (tmp_path / "c.csv").write_text(IMBALANCED + "\n")
    tail = PRIOR_MODEL.replace("UNITS", "3").replace("LOSS", "{SparseCategoricalCrossentropy: {from_logits: true}}")
    data = build(write_spec, """
        train: {source: {csv: {path: c.csv}}}
        validation: {fraction: 0.25, stratify: true}   # holds out 3, 2 and 1 of the classes' 12, 6 and 2
    """, tail=tail)
    assert data.info["class_counts"] == [9, 4, 1]
    assert data.info["class_weight"] == pytest.approx({0: 14 / 27, 1: 14 / 12, 2: 14 / 3})  # n / (k * n_c)
    assert data.info["output_bias"] == {"softmax": pytest.approx(np.log([9 / 14, 4 / 14, 1 / 14]).tolist())}
    spec = load(write_spec, "train: {source: {csv: {path: c.csv}}}", tail=tail)
    model = build_model(substitute_metadata(spec.doc["model"], data.info, spec, ("model",)), spec, seed=0)
    model.build((None, 2))
    bias = model.layers[-1].bias.numpy()
    np.testing.assert_allclose(bias, np.log([9 / 14, 4 / 14, 1 / 14]), rtol=1e-6)
    np.testing.assert_allclose(keras.ops.softmax(bias).numpy(), [9 / 14, 4 / 14, 1 / 14], rtol=1e-6)


def test_prior_of_one_sigmoid_unit_is_the_log_odds(write_spec, tmp_path):
    from runner.spec.metadata import substitute_metadata

    (tmp_path / "b.csv").write_text("\n".join(f"{i},{int(i >= 15)}" for i in range(20)) + "\n")
    tail = PRIOR_MODEL.replace("UNITS", "1").replace("LOSS", "binary_crossentropy")
    data = build(write_spec, "train: {source: {csv: {path: b.csv}}}", tail=tail)
    assert data.info["output_bias"]["sigmoid"] == pytest.approx(np.log(5 / 15))
    assert data.info["class_weight"] == pytest.approx({0: 20 / 30, 1: 20 / 10})
    spec = load(write_spec, "train: {source: {csv: {path: b.csv}}}", tail=tail)
    layer = substitute_metadata(spec.doc["model"], data.info, spec, ("model",))["sequential"]["layers"][0]
    assert layer["Dense"]["bias_initializer"] == {"class_name": "Constant",
                                                  "config": {"value": [pytest.approx(np.log(5 / 15))]}}
    wrong = load(write_spec, "train: {source: {csv: {path: b.csv}}}", tail=tail.replace("units: 1", "units: 3"))
    with pytest.raises(SpecError) as caught:
        substitute_metadata(wrong.doc["model"], data.info, wrong, ("model",))
    assert str(caught.value).split(": ", 1)[1] == (
        "model.sequential.layers[0].Dense.bias_initializer: prior sets one bias per class: the layer has 3 units "
        "and the train labels 2 classes (or 1 unit for binary labels)")


def test_values_from_the_data_mistakes(write_spec, tmp_path):
    from runner.spec.errors import SpecErrors

    (tmp_path / "gap.csv").write_text("1,0\n2,2\n3,0\n")  # no class 1
    tail = PRIOR_MODEL.replace("UNITS", "3").replace("LOSS", "{SparseCategoricalCrossentropy: {from_logits: true}}")
    spec = load(write_spec, "train: {source: {csv: {path: gap.csv}}}", tail=tail)
    with pytest.raises(SpecError) as caught:
        build_datasets(spec)
    assert str(caught.value).split(": ", 1)[1] == (
        "train.class_weight: class 1 has no example in the train split: its balanced weight would be infinite")
    with pytest.raises(SpecErrors) as caught:
        load(write_spec, "train: {source: {csv: {path: gap.csv}}}", tail="""
model: {sequential: {layers: [{Dense: {units: 4, bias_initializer: prior}}, {Dense: {units: 3}}]}}
train: {epochs: 1, loss: mse, optimizer: adam}
""")
    assert [line.split(": ", 1)[1] for line in str(caught.value).splitlines()] == [
        "model.sequential.layers[0].Dense.bias_initializer: prior sets an output layer's bias from the train "
        "split's class frequencies: it goes on the bias_initializer of the model's output Dense layer (the last "
        "of a sequential model, or a functional output)"]


# --- small ops and image folders without image_size ---------------------------------------------

def test_clip_grayscale_to_rgb_and_polynomial(write_spec, tmp_path):
    np.save(tmp_path / "x.npy", np.array([[-3, 1, 9], [4, 12, -1]], np.int64))
    np.save(tmp_path / "g.npy", np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
    np.save(tmp_path / "p.npy", np.array([[2.0, -1.0]], np.float32))
    data = build(write_spec, """
        train: {source: {npy: {features: x.npy}}, stages: [{map: {ops: [{clip: {min: 0, max: 5}}]}}]}
        validation: {source: {npy: {features: x.npy}}, stages: [{map: {ops: [{clip: {max: 2.5}}]}}]}
        test: {source: {npy: {features: g.npy}}, stages: [{map: {ops: [grayscale_to_rgb: {}]}}]}
    """)
    assert data.train.element_spec.dtype == tf.int64
    assert [e.tolist() for e in data.train.as_numpy_iterator()] == [[0, 1, 5], [4, 5, 0]]
    assert data.validation.element_spec.dtype == tf.float32
    assert [e.tolist() for e in data.validation.as_numpy_iterator()] == [[-3, 1, 2.5], [2.5, 2.5, -1]]
    image = next(data.test.as_numpy_iterator())
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, np.repeat(np.arange(4, dtype=np.uint8).reshape(2, 2, 1), 3, axis=-1))
    data = build(write_spec, "train: {source: {npy: {features: p.npy}}, stages: [{map: {ops: [{polynomial: {degree: 3}}]}}]}")
    assert next(data.train.as_numpy_iterator()).tolist() == [2, -1, 4, 1, 8, -1]
    assert error_of(write_spec, "train: {source: {npy: {features: x.npy}}, stages: [{map: {ops: [{clip: {min: 3, max: 1}}]}}]}") == (
        "data.train.stages[0].map.ops[0].clip.min: min 3 is above max 1")


def write_png(path, height, width, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(np.full((height, width, 3), value, np.uint8)).numpy())


def test_image_folder_without_image_size(write_spec, tmp_path):
    from runner.data.sources.image_folder import image_size

    for i, kind in enumerate(["cat", "dog"]):
        write_png(tmp_path / "same" / kind / "a.png", 6, 4, 10 * i)
        write_png(tmp_path / "mixed" / kind / "a.png", 6 + 2 * i, 4, 10 * i)
    data = build(write_spec, "train: {source: {image_folder: {directory: same}}, stages: [{batch: {batch_size: 2}}]}")
    assert data.train.element_spec[0] == tf.TensorSpec([None, 6, 4, 3], tf.uint8)  # one size: a static shape
    assert next(data.train.as_numpy_iterator())[0].shape == (2, 6, 4, 3)
    assert error_of(write_spec, "train: {source: {image_folder: {directory: mixed}}, stages: [{batch: {batch_size: 2}}]}") == (
        f"data.train.source.image_folder: the images under {tmp_path / 'mixed'} have 2 sizes (6x4, 8x4), and a "
        "batch holds images of one size: set image_size: [height, width] to resize them all (or resize them with a "
        "map op before batch)")
    data = build(write_spec, """
        train:
          source: {image_folder: {directory: mixed}}
          stages: [{map: {ops: [{resize: {size: [5, 5]}}]}}, {batch: {batch_size: 2}}]
    """)
    assert next(data.train.as_numpy_iterator())[0].shape == (2, 5, 5, 3)
    jpeg = tmp_path / "x.jpg"
    jpeg.write_bytes(tf.io.encode_jpeg(np.zeros((7, 9, 3), np.uint8)).numpy())
    assert image_size(jpeg) == (7, 9)


def test_windows_run_in_memory_for_the_fused_engine(write_spec, tmp_path):
    from runner.data.in_memory import plan_in_memory

    np.save(tmp_path / "x.npy", np.arange(30, dtype=np.float32)[:, None])
    spec = load(write_spec, """
        train:
          source: {npy: {features: x.npy}}
          stages: [{window: {length: 4}}, {shuffle: {buffer_size: all}}, {batch: {batch_size: 8}}]
        validation: {fraction: 0.2, shuffle: false}
    """)
    keras.utils.set_random_seed(7)
    datasets = build_datasets(spec)
    plan, reason = plan_in_memory(spec, datasets, "train")
    assert reason == "" and plan.count == 24 - 4  # 24 steps of train: 20 windows
    x, y = batches(plan.prefix.batch(100))
    np.testing.assert_array_equal(x[:, :, 0], np.arange(20)[:, None] + np.arange(4))
    np.testing.assert_array_equal(y[:, 0], np.arange(4, 24))


def test_a_run_records_balanced_weights_and_the_prior_in_its_manifest(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run([sys.executable, "-m", "runner.cli", "run", str(REPO / "specs" / "imbalanced.yaml"),
                             "--quiet", "--set", "train.epochs=1", "--set", f"outputs.dir={tmp_path}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=900,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    run_dir = next(tmp_path.glob("imbalanced/*"))
    info = json.loads((run_dir / "manifest.json").read_text())["data_info"]
    counts = info["class_counts"]
    assert info["class_names"] == ["Adelie", "Chinstrap", "Gentoo"] and sum(counts) == 275
    assert counts == [122, 54, 99]  # 80% of 152, 68 and 124, stratified
    assert {int(k): v for k, v in info["class_weight"].items()} == pytest.approx(
        {c: 275 / (3 * n) for c, n in enumerate(counts)})
    assert info["output_bias"]["softmax"] == pytest.approx(np.log(np.array(counts) / 275).tolist())


def test_windows_of_named_columns_and_a_split_too_short(write_spec, tmp_path):
    rows = "\n".join(f"{t},{t * 10},{t + 0.5}" for t in range(10))
    (tmp_path / "w.csv").write_text("temp,wind,y\n" + rows + "\n")
    data = build(write_spec, """
        train:
          source: {csv: {path: w.csv, header: true, label: y, features: {temp: [temp], wind: [wind]}}}
          stages: [{window: {length: 3, stride: 2}}]
    """)
    assert data.train.element_spec[0] == {"temp": tf.TensorSpec([3, 1], tf.float32),
                                          "wind": tf.TensorSpec([3, 1], tf.float32)}
    elements = list(data.train.as_numpy_iterator())
    assert len(elements) == 4  # starts 0, 2, 4, 6 (the target of a start at 8 would be step 11)
    assert elements[1][0]["wind"][:, 0].tolist() == [20, 30, 40] and elements[1][1] == pytest.approx(5.5)
    np.save(tmp_path / "x.npy", SERIES)
    assert error_of(write_spec, """
        train:
          source: {npy: {features: x.npy}}
          stages: [{window: {length: 8, sampling_rate: 2}}]
        validation: {fraction: 0.2, shuffle: false}
    """) == ("data.train.stages[0].window: a window spans 16 time steps (length 8, sampling_rate 2, horizon 1), "
             "but data.validation has only 4 steps: shorten the window or hold out a larger fraction")


def test_plan_shows_the_values_computed_from_the_train_split():
    from runner.commands.planning import Plan
    from runner.commands.plan_text import render_text

    plan = Plan(train={"from_data": {"class_counts": [9, 4, 1], "class_weight": {0: 14 / 27, 1: 14 / 12, 2: 14 / 3},
                                     "output_bias": {"softmax": np.log([9 / 14, 4 / 14, 1 / 14]).tolist()}}})
    assert ("from the train split: class counts [9, 4, 1]; balanced class_weight {0: 0.5185, 1: 1.167, 2: 4.667}; "
            "prior bias softmax [-0.4418, -1.2528, -2.6391]") in render_text(plan, "s.yaml").splitlines()


def test_predict_cuts_an_input_series_into_windows_with_trains_statistics(write_spec, tmp_path):
    import json

    from runner.data.learned import FILE_NAME
    from runner.commands.prediction import preprocessing_steps, read_inputs

    rows = "\n".join(f"2000-01-{t + 1:02d},{t * 2.0}" for t in range(20))
    (tmp_path / "s.csv").write_text("day,value\n" + rows + "\n")
    spec = load(write_spec, """
        train:
          source: {csv: {path: s.csv, header: true, features: [value], label: null}}
          stages: [{map: {ops: [normalize: {}]}}, {window: {length: 3}}, {batch: {batch_size: 4}}]
        test: {fraction: 0.2, shuffle: false}
    """)
    data = build_datasets(spec)
    (tmp_path / FILE_NAME).write_text(json.dumps(data.learned.to_json()))
    mean, std = np.mean(np.arange(16) * 2.0), np.std(np.arange(16) * 2.0)  # train: the first 16 days
    (tmp_path / "new.csv").write_text("day,value\n2001-01-01,100\n2001-01-02,102\n2001-01-03,104\n2001-01-04,90\n")
    features = read_inputs(spec, tmp_path, tmp_path / "new.csv").features
    dataset = tf.data.Dataset.from_tensor_slices(features)
    for step in preprocessing_steps(spec, tmp_path, "train", data.info):
        dataset = step(dataset)
    windows = np.stack(list(dataset.as_numpy_iterator()))
    assert windows.shape == (2, 3, 1)  # every window of the input, the last one's included (no target)
    np.testing.assert_allclose(windows[:, :, 0], (np.array([[100, 102, 104], [102, 104, 90]]) - mean) / std,
                               rtol=1e-5)


def test_a_test_fraction_is_carved_before_validation_and_both_are_of_the_whole(write_spec, tmp_path):
    from runner.spec.errors import SpecErrors

    np.save(tmp_path / "x.npy", np.arange(50, dtype=np.float32)[:, None])
    np.save(tmp_path / "y.npy", (np.arange(50) % 5 == 0).astype(np.int64))  # 10 of class 1
    data = build(write_spec, """
        train: {source: {npy: {features: x.npy, label: y.npy}}}
        validation: {fraction: 0.2}
        test: {fraction: 0.2, stratify: true}
    """)
    assert data.info["num_examples"] == {"train": 30, "validation": 10, "test": 10}
    parts = {name: [(int(x[0]), int(y)) for x, y in getattr(data, name).as_numpy_iterator()]
             for name in ("train", "validation", "test")}
    ids = [i for part in parts.values() for i, _ in part]
    assert sorted(ids) == list(range(50))  # disjoint, and nothing lost
    assert sum(y for _, y in parts["test"]) == 2  # stratified: a fifth of class 1's 10
    with pytest.raises(SpecErrors) as caught:
        load(write_spec, """
            train: {source: {npy: {features: x.npy, label: y.npy}}}
            test: {source: {npy: {features: x.npy}}, fraction: 0.2}
        """)
    assert str(caught.value).split(": ", 1)[1] == "data.test: give either 'source' or 'fraction', not both or neither"
