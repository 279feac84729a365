"""The one build step (runner.run.build): what it holds for a small spec, and who builds through it."""

from __future__ import annotations

import ast

import pytest

from conftest import REPO
from runner.spec import load_spec
from runner.spec.errors import SpecError

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from runner.outputs.run_dir import RunDir  # noqa: E402
from runner.run.build import STEPS, Build, collect_into  # noqa: E402

SPEC = """\
version: 1
name: built
seed: 3
data:
  train:
    source:
      synthetic:
        x: {uniform: {low: -1.0, high: 1.0, num: 40}}
        y: {linear: {w: 3.0, b: 2.0}}
    stages:
      - batch: {batch_size: 8}
  validation:
    source:
      synthetic:
        x: {uniform: {low: -1.0, high: 1.0, num: 16}}
        y: {linear: {w: 3.0, b: 2.0}}
    stages:
      - batch: {batch_size: 8}
model:
  sequential: {input_shape: [1], layers: [{Dense: {units: 4}}, {Dense: {units: 1}}]}
train:
  epochs: 1
  loss: mse
  optimizer: {Adam: {learning_rate: 0.01}}
  metrics: [mae]
  callbacks: [{CSVLogger: {filename: log.csv}}]
"""


@pytest.fixture
def spec(write_spec):
    return load_spec(write_spec(SPEC))


def test_a_build_holds_every_object_a_run_is_made_of(spec):
    build = Build(spec).through("metrics")
    assert build.done == list(STEPS)
    assert build.setup.num_replicas == 1 and build.setup.strategy_name == "default"
    assert build.validated == "validation" and build.validation is build.datasets.validation
    assert build.datasets.train.element_spec[0].shape.as_list() == [None, 1]
    assert build.model.input_shape == (None, 1) and build.model.output_shape == (None, 1)
    assert isinstance(build.optimizer, keras.optimizers.Adam)
    assert float(build.optimizer.learning_rate) == pytest.approx(0.01)
    assert isinstance(build.loss_object, keras.losses.Loss) and build.loss_object.name == "mean_squared_error"
    assert build.metrics == ["mae"]  # as Keras names it; compile resolves it for the labels


def test_steps_run_in_order_once_each_however_far_each_caller_goes(spec):
    build = Build(spec).through("datasets")
    assert build.done == ["devices", "seed", "determinism", "datasets"] and build.model is None
    setup = build.setup
    build.through("model").through("loss")
    assert build.done == list(STEPS[:STEPS.index("loss") + 1])
    assert build.setup is setup  # devices are set up once
    assert build.loss_object is not None and "metrics" not in build.done


def test_the_same_seed_builds_the_same_model(spec):
    first = Build(spec).through("model").model.get_weights()
    second = Build(spec).through("model").model.get_weights()
    assert all((a == b).all() for a, b in zip(first, second))


def test_callbacks_are_made_for_the_run_directory_they_write_into(spec, tmp_path):
    build = Build(spec)
    (callback,) = build.callbacks(RunDir(tmp_path))
    assert isinstance(callback, keras.callbacks.CSVLogger)
    assert callback.filename == str(tmp_path / "log.csv")


def test_a_given_model_is_used_instead_of_building_one(spec):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    build = Build(spec, model=lambda: model).through("loss")
    assert build.model is model and build.adapted == [] and build.loss_object is not None


def test_mistakes_raise_by_default_and_are_all_kept_when_collected(write_spec):
    text = SPEC.replace("loss: mse", "loss: mse\n  class_weight: {0: 1.0, 7: 2.0, 9: 1.0}")
    spec = load_spec(write_spec(text))
    with pytest.raises(SpecError) as caught:
        Build(spec).through("datasets")
    assert "class_weight needs integer class labels" in str(caught.value)
    errors = []
    build = Build(spec, collect=collect_into(errors)).through("metrics")
    assert [e.path for e in errors] == [("train", "class_weight")]
    assert build.model is not None  # the rest is still built


def _calls(relative: str) -> set[str]:
    tree = ast.parse((REPO / relative).read_text())
    calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
    return {getattr(f, "id", None) or getattr(f, "attr", None) for f in calls}


@pytest.mark.parametrize("module, built", [
    ("runner/run/pipeline.py", "Build"),
    ("runner/commands/planning.py", "Build"),
    ("runner/commands/evaluation.py", "Build"),
    ("runner/commands/evaluation.py", "restored_model"),
    ("runner/commands/prediction.py", "restored_model"),
])
def test_run_plan_evaluate_and_predict_build_through_it(module, built):
    calls = _calls(module)
    assert built in calls
    # and none of them makes the build's objects by hand
    assert not calls & {"setup_devices", "build_datasets", "build_model", "get_optimizer", "resolve_outputs",
                        "check_loss_fits", "load_model", "set_random_seed"}
