"""Preprocessing layers adapted on the train split: Normalization, TextVectorization, ... (runner.models.adapt)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.spec import SpecError, load_spec

HEAD = """\
version: 1
name: adapt
seed: 1
data:
  train:
    source:
      npz: {path: train.npz, features: x, label: y}
    stages:
      - batch: {batch_size: 32}
  test:
    source:
      npz: {path: test.npz, features: x, label: y}
    stages:
      - batch: {batch_size: 32}
"""
TRAIN = """\
train:
  epochs: 1
  loss: mse
  optimizer: {SGD: {learning_rate: 0.01}}
"""


def tables(folder, seed=0):
    """A train table and a test table with different means and scales per column."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(200, 3)) * [1, 10, 100] + [5, -3, 50]).astype(np.float32)
    y = (x @ np.array([1.0, 0.1, 0.01], np.float32))[:, None]
    np.savez(folder / "train.npz", x=x[:150], y=y[:150])
    np.savez(folder / "test.npz", x=x[150:] * 3 + 7, y=y[150:])
    return x[:150]


def write(folder, model: str, seed=0):
    tables(folder, seed)
    path = folder / "spec.yaml"
    path.write_text(HEAD + "model:\n" + textwrap.indent(textwrap.dedent(model).strip(), "  ") + "\n" + TRAIN)
    return path


SEQUENTIAL = """
    sequential:
      input_shape: [3]
      layers:
        - Normalization: {axis: -1, name: norm%s}
        - Dense: {units: 1}
"""


def errors_of(path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return [str(e).split(": ", 1)[1] for e in getattr(caught.value, "errors", [caught.value])]


def test_validate_says_which_layers_will_be_adapted(tmp_path):
    path = write(tmp_path, """
        sequential:
          input_shape: [3]
          layers:
            - Normalization: {axis: -1}
            - Discretization: {bin_boundaries: [0.0, 1.0]}
            - {class_name: Normalization, config: {adapt: {examples: 64}}}
            - Normalization: {mean: 0.0, variance: 1.0}
            - Normalization: {adapt: false}
            - Dense: {units: 1}
    """)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "note:" in line]
    assert notes == [
        f"{path}:19:9: model.sequential.layers[0]: note: Normalization will be adapted on the whole train split "
        "before training (give its state, or adapt: false, to keep it as written)",
        f"{path}:21:9: model.sequential.layers[2]: note: Normalization will be adapted on the first 64 train "
        "examples before training (give its state, or adapt: false, to keep it as written)",
    ]


def test_validate_refuses_adapt_where_it_means_nothing(tmp_path):
    path = write(tmp_path, """
        sequential:
          input_shape: [3]
          layers:
            - Flatten: {adapt: true}
            - Normalization: {mean: 0.0, variance: 1.0, adapt: {examples: 10}}
            - StringLookup: {adapt: {examples: 0}}
            - Normalization: {adapt: {exampels: 10}}
            - Dense: {units: 1}
    """)
    assert errors_of(path) == [
        "model.sequential.layers[0].Flatten.adapt: unknown argument 'adapt' of Flatten",
        "model.sequential.layers[1].Normalization.adapt: Normalization is given its state (mean, variance): it "
        "is not adapted; remove adapt, or the state to learn it from the train split",
        "model.sequential.layers[2].StringLookup.adapt.examples: expected a number of examples >= 1, got 0",
        "model.sequential.layers[3].Normalization.adapt: adapt is true, false or {examples: N}",
    ]


slow = pytest.mark.slow


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def run(path, monkeypatch, *arguments):
    from runner.run.pipeline import run_spec

    monkeypatch.chdir(path.parent)
    spec = load_spec(path, list(arguments))
    return run_spec(spec, quiet=True, resume_from=None)


@slow
def test_normalization_has_the_train_splits_mean_and_variance(tmp_path, monkeypatch, keras):
    path = write(tmp_path, SEQUENTIAL % "")
    x = tables(tmp_path)
    result = run(path, monkeypatch)
    layer = keras.models.load_model(result.run_dir / "model.keras").layers[0]
    np.testing.assert_allclose(np.asarray(layer.mean)[0], x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.variance)[0], x.var(0), rtol=1e-4)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["adapted"] == [{"layer": "norm", "class": "Normalization",
                                    "path": "model.sequential.layers[0]", "examples": 150}]
    assert (result.run_dir / "adapted" / "norm" / "variables.npz").is_file()


@slow
def test_a_sample_size_adapts_on_the_first_examples_and_plan_says_so(tmp_path, monkeypatch, keras):
    from runner.commands.planning import plan_spec
    from runner.commands.plan_text import render_text

    path = write(tmp_path, SEQUENTIAL % ", adapt: {examples: 40}")
    x = tables(tmp_path)
    monkeypatch.chdir(tmp_path)
    plan = plan_spec(load_spec(path))
    assert plan.errors == []
    assert plan.model["adapted"] == [{"layer": "norm", "class": "Normalization",
                                      "path": "model.sequential.layers[0]", "examples": 40}]
    assert "adapted: norm (Normalization) on 40 train examples" in render_text(plan, path).splitlines()
    result = run(path, monkeypatch)
    layer = keras.models.load_model(result.run_dir / "model.keras").layers[0]
    np.testing.assert_allclose(np.asarray(layer.mean)[0], x[:40].mean(0), rtol=1e-5)


@slow
def test_functional_layers_adapt_on_the_input_that_feeds_them(tmp_path, monkeypatch, keras):
    path = write(tmp_path, """
        functional:
          inputs:
            x: {shape: [3]}
          layers:
            - {name: direct, layer: Normalization, inputs: x}
            - {name: scaled, layer: {Rescaling: {scale: 2.0, offset: 1.0}}, inputs: x}
            - {name: after, layer: Normalization, inputs: scaled}
            - {name: joined, layer: Concatenate, inputs: [direct, after]}
            - {name: out, layer: {Dense: {units: 1}}, inputs: joined}
          outputs: out
    """)
    x = tables(tmp_path)
    model = keras.models.load_model(run(path, monkeypatch).run_dir / "model.keras")
    np.testing.assert_allclose(np.asarray(model.get_layer("direct").mean)[0], x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.get_layer("after").mean)[0], (x * 2 + 1).mean(0), rtol=1e-5)


@slow
def test_a_layer_after_trained_layers_is_refused(tmp_path, monkeypatch, keras):
    path = write(tmp_path, """
        sequential:
          input_shape: [3]
          layers:
            - Dense: {units: 2, name: hidden}
            - Normalization: {name: norm}
            - Dense: {units: 1}
    """)
    with pytest.raises(SpecError) as caught:
        run(path, monkeypatch)
    assert str(caught.value).endswith(  # by validate (load_spec), before anything is built
        "model.sequential.layers[1]: norm (Normalization) is adapted on the values that reach it, and "
        "hidden before it has weights that training changes: put adapted layers before trained ones, or give its state")


@slow
def test_resume_restores_the_adapted_state_instead_of_adapting_again(tmp_path, monkeypatch, keras):
    from runner.run.pipeline import run_spec

    path = write(tmp_path, SEQUENTIAL % "")
    x = tables(tmp_path)
    first = run(path, monkeypatch)
    tables(tmp_path, seed=9)  # the data changes: adapting again would learn other statistics
    spec = load_spec(path, ["train.epochs=2"])
    resumed = run_spec(spec, quiet=True, resume_from=first.run_dir)
    layer = keras.models.load_model(resumed.run_dir / "model.keras").layers[0]
    np.testing.assert_allclose(np.asarray(layer.mean)[0], x.mean(0), rtol=1e-5)
    manifest = json.loads((resumed.run_dir / "manifest.json").read_text())
    assert manifest["adapted"][0]["restored_from"] == str(first.run_dir / "adapted" / "norm")


@slow
def test_text_vectorization_adapts_on_strings_and_trains(tmp_path, monkeypatch, keras):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(160):
        words = list(rng.choice(["good", "great", "fine"] if i % 2 else ["bad", "awful", "poor"], 2))
        words += list(rng.choice(["the", "movie", "was", "very"], 3))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(i % 2)
    np.savez(tmp_path / "text.npz", x=np.array(texts), y=np.array(labels))
    path = tmp_path / "text.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: text
        seed: 1
        data:
          train:
            source:
              npz: {path: text.npz, features: x, label: y}
            stages:
              - batch: {batch_size: 16}
        model:
          functional:
            inputs:
              text: {shape: [], dtype: string}
            layers:
              - {name: words, layer: {TextVectorization: {max_tokens: 20, output_sequence_length: 5}}, inputs: text}
              - {name: embedded, layer: {Embedding: {input_dim: 20, output_dim: 8}}, inputs: words}
              - {name: pooled, layer: GlobalAveragePooling1D, inputs: embedded}
              - {name: out, layer: {Dense: {units: 1}}, inputs: pooled}
            outputs: out
        train:
          epochs: 4
          loss: {BinaryCrossentropy: {from_logits: true}}
          optimizer: {Adam: {learning_rate: 0.05}}
          metrics: [BinaryAccuracy]
        """))
    result = run(path, monkeypatch)
    vocabulary = keras.models.load_model(result.run_dir / "model.keras").get_layer("words").get_vocabulary()
    assert vocabulary[:2] == ["", "[UNK]"]
    assert sorted(vocabulary[2:]) == sorted({w for t in texts for w in t.split()})
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["train"]["BinaryAccuracy"] == 1.0


@slow
def test_a_layer_whose_output_width_is_what_it_learns_is_adapted_before_it_is_wired(tmp_path, monkeypatch, keras):
    path = write(tmp_path, """
        functional:
          inputs:
            x: {shape: [3]}
          layers:
            - {name: bins, layer: {Discretization: {num_bins: 5}}, inputs: x}
            - {name: lookup, layer: {IntegerLookup: {output_mode: multi_hot}}, inputs: bins}
            - {name: out, layer: {Dense: {units: 1}}, inputs: lookup}
          outputs: out
    """)
    x = tables(tmp_path)
    first = run(path, monkeypatch)
    model = keras.models.load_model(first.run_dir / "model.keras")
    boundaries = model.get_layer("bins").bin_boundaries
    assert len(boundaries) == 4 and boundaries == sorted(boundaries)
    assert sorted(model.get_layer("lookup").get_vocabulary()[1:]) == [0, 1, 2, 3, 4]  # after the OOV index
    assert model.get_layer("out").kernel.shape == (6, 1)
    assert np.digitize(x, boundaries).max() == 4

    from runner.run.pipeline import run_spec

    resumed = run_spec(load_spec(path, ["train.epochs=2"]), quiet=True, resume_from=first.run_dir)
    again = keras.models.load_model(resumed.run_dir / "model.keras")
    assert again.get_layer("bins").bin_boundaries == boundaries
    assert again.get_layer("lookup").get_vocabulary() == model.get_layer("lookup").get_vocabulary()


def test_an_adaptable_layer_inside_another_layer_needs_its_state(tmp_path):
    path = write(tmp_path, """
        sequential:
          input_shape: [3]
          layers:
            - Reshape: {target_shape: [3, 1]}
            - TimeDistributed: {layer: Normalization}
            - TimeDistributed: {layer: {Normalization: {mean: 0.0, variance: 1.0}}}
            - Flatten: {}
            - Dense: {units: 1}
    """)
    assert errors_of(path) == [
        "model.sequential.layers[1].TimeDistributed.layer: Normalization inside TimeDistributed is not adapted "
        "(only the model's own layers are): give its state (mean, variance)",
    ]


@slow
def test_every_engine_trains_the_adapted_model_alike(tmp_path, monkeypatch, keras):
    path = write(tmp_path, SEQUENTIAL % "")
    x = tables(tmp_path)
    losses = {}
    for setting in ("train.loop=fit", "train.loop=custom", "train.engine=fused"):
        result = run(path, monkeypatch, setting, "train.epochs=2")
        manifest = json.loads((result.run_dir / "manifest.json").read_text())
        assert manifest["adapted"][0]["examples"] == 150
        layer = keras.models.load_model(result.run_dir / "model.keras").layers[0]
        np.testing.assert_allclose(np.asarray(layer.mean)[0], x.mean(0), rtol=1e-5)
        losses[setting] = json.loads((result.run_dir / "history.json").read_text())["loss"]
    assert json.loads((result.run_dir / "manifest.json").read_text())["engine"] == "fused"
    np.testing.assert_allclose(losses["train.loop=custom"], losses["train.loop=fit"], rtol=1e-5)
    np.testing.assert_allclose(losses["train.engine=fused"], losses["train.loop=fit"], rtol=1e-5)
