"""The text examples: the hand-written program validates on the spec's split; `pipe predict`
on a run whose model reads raw text (a folder of .txt files, one .txt file, a CSV text
column: runner.commands.predict_text), for a text_folder run and for a CSV `text:` run."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import textwrap

import numpy as np
import pytest

from runner.spec import SpecError, load_spec
from tests.conftest import REPO

pytestmark = pytest.mark.slow

WORDS = {"computers": "kernel compiler bug disk network program byte unix",
         "food": "soup garlic bread cheese tea dessert butter salad"}

MODEL_AND_TRAIN = """
model:
  functional:
    inputs:
      text: {shape: [], dtype: string}
    layers:
      - {name: words, inputs: text, layer: {TextVectorization: {max_tokens: 40, output_sequence_length: 6}}}
      - {name: embedded, inputs: words, layer: {Embedding: {input_dim: 40, output_dim: 8}}}
      - {name: pooled, inputs: embedded, layer: GlobalAveragePooling1D}
      - {name: logits, inputs: pooled, layer: {Dense: {units: 2}}}
    outputs: logits
train:
  epochs: 15
  loss: {SparseCategoricalCrossentropy: {from_logits: true}}
  optimizer: {Adam: {learning_rate: 0.05}}
  metrics: [SparseCategoricalAccuracy]
outputs: {dir: runs}
"""


def sentences(rng, name, count):
    words = WORDS[name].split()
    return [" ".join(rng.choice(words, 4)) for _ in range(count)]


def train_run(folder, data):
    from runner.run.pipeline import run_spec

    (folder / "spec.yaml").write_text("version: 1\nname: text\nseed: 3\ndata:\n"
                                      + textwrap.indent(textwrap.dedent(data).strip(), "  ") + MODEL_AND_TRAIN)
    with contextlib.chdir(folder):  # the run directory goes under the spec's folder
        return folder / run_spec(load_spec(folder / "spec.yaml"), quiet=True, resume_from=None).run_dir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_folder_run")
    rng = np.random.default_rng(0)
    for name in WORDS:
        (folder / "corpus" / name).mkdir(parents=True)
        for i, text in enumerate(sentences(rng, name, 24)):
            (folder / "corpus" / name / f"{i:02d}.txt").write_text(text + "\n")
    return folder, train_run(folder, """
        train:
          source: {text_folder: {directory: corpus}}
          stages: [{batch: {batch_size: 8}}]
    """)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv_text_run")
    rng = np.random.default_rng(1)
    with open(folder / "reviews.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["review", "topic"])
        for label, name in enumerate(WORDS):
            writer.writerows([text, label] for text in sentences(rng, name, 24))
    return folder, train_run(folder, """
        train:
          source: {csv: {path: reviews.csv, header: true, label: topic, features: [review], text: [review]}}
          stages: [{shuffle: {buffer_size: all}}, {batch: {batch_size: 8}}]
    """)


def predicted(run_dir, input_path, tmp_path, header):
    """(classes, probabilities, the other columns' cells) of `pipe predict`'s CSV, whose header
    must be `header`."""
    from runner.commands.prediction import predict_file

    out = tmp_path / "p.csv"
    result = predict_file(run_dir, input_path, out)
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == header and len(rows) - 1 == result.count
    probability = [i for i, name in enumerate(header) if name.startswith("probability_")]
    others = [i for i, name in enumerate(header) if not name.startswith("probability_") and name != "class"]
    return (np.array([int(r[header.index("class")]) for r in rows[1:]]),
            np.array([[float(r[i]) for i in probability] for r in rows[1:]]),
            [[r[i] for i in others] for r in rows[1:]])


FOLDER_HEADER = ["file", "class", "class_name", "probability_0", "probability_1"]
CSV_HEADER = ["class", "class_name", "probability_0", "probability_1"]  # a text_folder run knows class names


def expected(run_dir, texts):
    import keras

    logits = keras.saving.load_model(run_dir / "model.keras").predict(np.array(texts, dtype=object), verbose=0)
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


TEXTS = ["kernel bug in the compiler", "garlic soup and bread", "unix disk program", "tea with dessert"]


def write_texts(folder, texts):
    (folder / "nested").mkdir(parents=True)
    for i, text in enumerate(texts):  # one in a sub-folder: every .txt under the folder, sorted by path
        (folder / ("nested" if i == 3 else "") / f"{i}.txt").write_text(text)
    (folder / "notes.md").write_text("not a text to classify")
    return folder


def test_predict_a_folder_of_texts_one_text_and_a_csv_column_on_a_text_folder_run(folder_run, tmp_path):
    _, run_dir = folder_run
    folder = write_texts(tmp_path / "texts", TEXTS)
    classes, probabilities, others = predicted(run_dir, folder, tmp_path, FOLDER_HEADER)
    np.testing.assert_allclose(probabilities, expected(run_dir, TEXTS), rtol=1e-4, atol=1e-6)
    assert classes.tolist() == [0, 1, 0, 1]  # computers, food (the folders' alphabetical order)
    assert others == [["0.txt", "computers"], ["1.txt", "food"], ["2.txt", "computers"], ["nested/3.txt", "food"]]
    classes, probabilities, others = predicted(run_dir, folder / "1.txt", tmp_path, FOLDER_HEADER)
    assert classes.tolist() == [1] and probabilities.shape == (1, 2) and others == [["1.txt", "food"]]
    (tmp_path / "in.csv").write_text('id,text\n7,"kernel bug, network down"\n8,cheese salad\n')
    classes, probabilities, others = predicted(run_dir, tmp_path / "in.csv", tmp_path, CSV_HEADER)
    assert classes.tolist() == [0, 1] and others == [["computers"], ["food"]]
    np.testing.assert_allclose(probabilities, expected(run_dir, ["kernel bug, network down", "cheese salad"]),
                               rtol=1e-4, atol=1e-6)


def test_text_inputs_predict_cannot_read_are_located_at_the_file(folder_run, tmp_path):
    from runner.commands.prediction import predict_file

    _, run_dir = folder_run
    (tmp_path / "empty").mkdir()
    (tmp_path / "two.csv").write_text("id,review\n1,garlic\n")
    for given, message in ((tmp_path / "empty", f"no text files (.txt) under {tmp_path / 'empty'}"),
                           (tmp_path / "two.csv", "which column holds the texts? name it 'text' in the header "
                                                  "row (columns: id, review)")):
        with pytest.raises(SpecError) as error:
            predict_file(run_dir, given, tmp_path / "p.csv")
        assert error.value.message == message and str(error.value).startswith(str(given))


def test_predict_a_csv_text_column_and_a_folder_of_texts_on_a_csv_run(csv_run, tmp_path):
    folder, run_dir = csv_run
    (tmp_path / "new.csv").write_text('review,topic\n"bread, butter and tea",1\nnetwork byte unix,0\n')
    classes, probabilities, _ = predicted(run_dir, tmp_path / "new.csv", tmp_path, ["class", *CSV_HEADER[2:]])
    np.testing.assert_allclose(probabilities, expected(run_dir, ["bread, butter and tea", "network byte unix"]),
                               rtol=1e-4, atol=1e-6)
    assert classes.tolist() == [1, 0]
    classes, probabilities, _ = predicted(run_dir, write_texts(tmp_path / "texts", TEXTS), tmp_path,
                                          ["file", "class", *CSV_HEADER[2:]])
    assert classes.tolist() == [0, 1, 0, 1]
    np.testing.assert_allclose(probabilities, expected(run_dir, TEXTS), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("seed", [42, 7])
def test_the_hand_written_text_program_validates_on_the_specs_split(tmp_path, seed):
    import keras

    from runner.data.build import build_datasets

    rng = np.random.default_rng(seed)
    for name, count in (("computers", 23), ("food", 17), ("zoo", 10)):
        (tmp_path / name).mkdir()
        for i, text in enumerate(sentences(rng, "food" if name == "zoo" else name, count)):
            (tmp_path / name / f"{i:04d}.txt").write_text(f"{name} {i} {text}")
    spec = load_spec(REPO / "specs" / "text_classification.yaml",
                     [f"data.train.source.text_folder.directory={tmp_path}", f"seed={seed}"])
    keras.utils.set_random_seed(seed)
    data = build_datasets(spec)
    texts = {split: sorted(t.decode() for t, _ in getattr(data, split).unbatch().as_numpy_iterator())
             for split in ("train", "validation")}
    loaded = importlib.util.spec_from_file_location("text_hand_written", REPO / "benchmarks" / "text_hand_written.py")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    train, validation, classes = module.pipe_split(str(tmp_path), seed)
    assert classes == ["computers", "food", "zoo"] and len(validation[0]) == 10 and len(train[0]) == 40
    for split, (files, labels) in (("train", train), ("validation", validation)):
        assert texts[split] == sorted(open(f).read() for f in files)
        assert [classes[label] for label in labels] == [f.split("/")[-2] for f in files]
