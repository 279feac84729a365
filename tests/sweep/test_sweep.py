"""`pipe sweep`: the sweep: section as pipe validate checks it (no TensorFlow, no Optuna), and
pruning at the epoch ends of the three engines."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import REPO, SPECS
from runner.cli import app
from runner.spec import load_spec
from runner.spec.sweep_space import read_sweep, set_key, sweep_errors, yaml_value

cli = CliRunner()
EXAMPLE = SPECS / "sweep_regression.yaml"

BASE = f"""extends: {EXAMPLE}
sweep:
  objective: validation.loss
  parameters:
"""


def _errors(write_spec, parameters: str, objective: str = "validation.loss"):
    path = write_spec(BASE.replace("validation.loss", objective) + parameters)
    result = cli.invoke(app, ["validate", str(path)])
    return path, result


def test_the_example_sweep_validates_and_reads_with_its_defaults():
    result = cli.invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    sweep = read_sweep(load_spec(EXAMPLE))
    assert [p.key for p in sweep.parameters] == ["train.optimizer.SGD.learning_rate",
                                                 "model.sequential.layers.0.Dense.units",
                                                 "model.sequential.layers.0.Dense.activation"]
    assert (sweep.split, sweep.metric, sweep.direction) == ("validation", "loss", "minimize")
    assert (sweep.trials, sweep.sampler, sweep.pruner, sweep.seed) == (6, "tpe", "median", 0)
    assert sweep.parameters[1].ends() == [4, 32]
    assert sweep.epoch_key() == "val_loss"


def test_accuracy_objectives_are_maximised_by_default(write_spec):
    path = write_spec(BASE + "    train.epochs: {int: [1, 3]}\n  objective: validation.accuracy\n".replace(
        "  objective: validation.accuracy\n", ""))
    spec = load_spec(path, ["sweep.objective=validation.sparse_categorical_accuracy"])
    assert read_sweep(spec).direction == "maximize"


def test_a_value_that_breaks_the_spec_is_located_at_its_parameter(write_spec):
    path, result = _errors(write_spec, "    model.sequential.layers[0].Dense.activation: {choice: [relu, nope]}\n")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[0] == (
        f"{path}:5:5: sweep.parameters.model.sequential.layers[0].Dense.activation: at "
        "model.sequential.layers[0].Dense.activation=\"nope\" the spec is invalid: unknown activation 'nope'")


def test_a_range_end_that_breaks_the_spec_is_found(write_spec):
    path, result = _errors(write_spec, "    train.epochs: {int: [0, 3]}\n")
    assert result.exit_code == 1
    assert f"{path}:5:5: sweep.parameters.train.epochs: at train.epochs=0 the spec is invalid" in result.output


def test_paths_that_do_not_exist_and_bad_ranges(write_spec):
    path, result = _errors(write_spec, "    model.sequential.layers[3].Dense.units: {int: [4, 32]}\n"
                                       "    train.optimizer.SGD.learning_rate: {float: [0.0, 0.1], log: true}\n"
                                       "    train.batch.size: {int: [8, 2]}\n")
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1
    assert f"{path}:5:5: sweep.parameters.model.sequential.layers[3].Dense.units: model.sequential.layers " \
           "has 2 items; no index 3" in lines
    assert f"{path}:6:5: sweep.parameters.train.optimizer.SGD.learning_rate: a log range starts above 0, " \
           "not at 0.0" in lines
    assert f"{path}:7:5: sweep.parameters.train.batch.size: the range [8, 2] is empty: low is above high" in lines


def test_an_objective_on_a_missing_split(write_spec):
    path, result = _errors(write_spec, "    train.epochs: {int: [1, 3]}\n", objective="test.loss")
    assert result.exit_code == 1
    assert f"{path}:3:14: sweep.objective: there is no data.test split to measure loss on" in result.output


def test_the_schema_refuses_an_unknown_distribution(write_spec):
    path, result = _errors(write_spec, "    train.epochs: {uniform: [1, 3]}\n")
    assert result.exit_code == 1
    assert "sweep.parameters.train.epochs" in result.output and "uniform" in result.output


def test_grid_takes_no_float_ranges(write_spec):
    path = write_spec(BASE + "    train.optimizer.SGD.learning_rate: {float: [0.01, 0.1]}\n  sampler: grid\n")
    errors = sweep_errors(load_spec(path), [path])
    assert [e.message for e in errors] == ["the grid sampler takes choice and int parameters; give a choice of values"]


def test_values_written_for_set_read_back_the_same(write_spec):
    assert set_key("model.sequential.layers[1].Dense.units") == "model.sequential.layers.1.Dense.units"
    assert yaml_value(1e-05) == "1.0e-05" and yaml_value("relu") == '"relu"' and yaml_value([1, 2]) == "[1, 2]"
    spec = load_spec(EXAMPLE, ["train.optimizer.SGD.learning_rate=" + yaml_value(1e-05)])
    assert spec.doc["train"]["optimizer"]["SGD"]["learning_rate"] == 1e-05


def test_validate_imports_neither_optuna_nor_tensorflow():
    code = ("import sys\nfrom runner.cli import app\nfrom typer.testing import CliRunner\n"
            f"r = CliRunner().invoke(app, ['validate', {str(EXAMPLE)!r}])\nassert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'tensorflow', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "[]\n", result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fit", "custom", "fused"])
def test_a_pruner_stops_a_run_at_an_epoch_end_and_its_manifest_says_pruned(engine, tmp_path):
    from runner.run import epoch_end as progress
    from runner.run.pipeline import run_spec

    overrides = [f"outputs.dir={tmp_path}", "train.epochs=5"]
    overrides += {"fit": ["train.loop=fit", "train.engine=keras"], "custom": ["train.loop=custom", "train.engine=keras"],
                  "fused": ["train.loop=custom", "train.engine=fused"]}[engine]
    spec = load_spec(EXAMPLE, overrides)
    spec.doc.pop("sweep", None)
    heard = []

    def listener(epoch, logs, can_stop):
        heard.append((epoch, "val_loss" in logs, can_stop))
        return epoch == 1

    progress.listen(listener)
    try:
        with pytest.raises(progress.RunPruned):
            run_spec(spec, quiet=True)
    finally:
        progress.listen(None)
    assert heard == [(0, True, True), (1, True, True)]
    (run_dir,) = [p.parent for p in tmp_path.rglob("manifest.json")]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "pruned" and manifest["epochs_run"] == 2
    assert manifest["reason"] == "stopped by the sweep's pruner after 2 epochs"
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 3  # header and two epochs


def test_sweep_takes_one_of_a_spec_resume_or_join(tmp_path):
    result = cli.invoke(app, ["sweep"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "pipe sweep: give a SPEC, --resume SWEEP_DIR or --join SWEEP_DIR (one of them)"
    result = cli.invoke(app, ["sweep", "--resume", str(tmp_path), "--set", "train.epochs=2"])
    assert result.exit_code == 2
    assert "--set applies to a new sweep" in result.stderr


def test_best_yaml_reads_relative_paths_from_the_folder_of_the_spec_the_sweep_started_with(tmp_path):
    """best.yaml lives in the sweep directory; its data is where the trials found it."""
    specs, sweep_dir = tmp_path / "specs", tmp_path / "runs" / "s" / "sweep-1"
    specs.mkdir()
    sweep_dir.mkdir(parents=True)
    (tmp_path / "reg.csv").write_text("x,y\n1,2\n")
    started = specs / "sweep.yaml"
    started.write_text((SPECS / "keras_regression.yaml").read_text())
    (sweep_dir / "sweep.json").write_text(json.dumps({"files": [str(started)]}))
    (sweep_dir / "best.yaml").write_text(f"extends: {started}\n")
    best = load_spec(sweep_dir / "best.yaml")
    assert best.resolve_path("../reg.csv") == specs / "../reg.csv"
    assert load_spec(started).resolve_path("../reg.csv") == specs / "../reg.csv"
    (sweep_dir / "elsewhere.yaml").write_text(f"extends: {started}\n")  # not pipe's best.yaml
    assert load_spec(sweep_dir / "elsewhere.yaml").resolve_path("x.csv") == sweep_dir / "x.csv"


def test_the_median_pruner_may_cut_a_trial_after_its_first_epoch():
    optuna = pytest.importorskip("optuna", reason="pipe sweep needs Optuna: pip install 'pipe[sweep]'")

    from runner.sweep.study import pruner

    study = optuna.create_study(direction="minimize", pruner=pruner(read_sweep(load_spec(EXAMPLE))))
    for loss in (1.0, 2.0):  # the two trials the median waits for
        trial = study.ask()
        trial.report(loss, 0)
        study.tell(trial, loss)
    worse, better = study.ask(), study.ask()
    worse.report(3.0, 0)
    better.report(0.5, 0)
    assert worse.should_prune() and not better.should_prune()


def _trial_spec(tmp_path, *overrides):
    spec = load_spec(EXAMPLE, [f"outputs.dir={tmp_path}", "train.epochs=3", *overrides])
    spec.remove("sweep")
    return spec


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fused", "keras"])
def test_trials_sharing_their_data_leave_what_pipe_run_leaves(engine, tmp_path):
    """A worker builds the datasets once for trials whose data is the same; a trial's metrics
    are those of a run of its spec alone, and a swept data value builds them again."""
    import keras

    from runner.run.pipeline import run_spec
    from runner.run.shared_data import SharedData

    shared = SharedData()
    runs = {}
    for units in (8, 24, 16):
        keras.backend.clear_session()
        spec = _trial_spec(tmp_path / "sweep", f"train.engine={engine}", f"model.sequential.layers.0.Dense.units={units}")
        runs[units] = run_spec(spec, quiet=True, track=False, shared_data=shared)
    assert shared.reused == 2
    for units in (24, 16):
        keras.backend.clear_session()
        alone = run_spec(_trial_spec(tmp_path / f"alone{units}", f"train.engine={engine}",
                                     f"model.sequential.layers.0.Dense.units={units}"), quiet=True, track=False)
        shared_metrics, alone_metrics = _metrics(runs[units].run_dir), _metrics(alone.run_dir)
        assert shared_metrics.keys() == alone_metrics.keys()
        for split, values in alone_metrics.items():
            for name, value in values.items():
                assert shared_metrics[split][name] == pytest.approx(value, rel=1e-6), (units, split, name)
    manifest = json.loads((runs[16].run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["engine"] == ("fused" if engine == "fused" else "keras")
    keras.backend.clear_session()
    run_spec(_trial_spec(tmp_path / "sweep", f"train.engine={engine}", "data.train.stages.1.batch.batch_size=16"),
             quiet=True, track=False, shared_data=shared)
    assert shared.reused == 2  # a data value changed: built again, not reused


def test_the_data_key_follows_the_data_the_seed_and_the_device(tmp_path):
    from runner.run.shared_data import data_key

    base = data_key(_trial_spec(tmp_path))
    assert data_key(_trial_spec(tmp_path, "model.sequential.layers.0.Dense.units=4")) == base
    assert data_key(_trial_spec(tmp_path, "train.optimizer.SGD.learning_rate=0.5")) == base
    for changed in ("data.train.stages.1.batch.batch_size=16", "seed=7", "device.jit_compile=true",
                    "train.class_weight=balanced"):
        assert data_key(_trial_spec(tmp_path, changed)) != base, changed
    assert data_key(_trial_spec(tmp_path, "seed=null")) is None  # unseeded: each run shuffles anew


def _hparams_events(run_dir):
    """(hparams of the session start, {scalar tag: value}) in the run's tensorboard/ (its root)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    hparams, scalars = None, {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == metadata.PLUGIN_NAME and value.tag == metadata.SESSION_START_INFO_TAG:
                    data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                    hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                               for k, v in data.session_start_info.hparams.items()}
                elif value.HasField("tensor"):
                    scalars[value.tag] = float(tf.make_ndarray(value.tensor))
    return hparams, scalars


@pytest.mark.slow
def test_a_run_with_tensorboard_writes_its_hparams_and_final_metrics(tmp_path):
    from runner.run.pipeline import run_spec

    result = run_spec(_trial_spec(tmp_path, "outputs.tensorboard=true"), quiet=True, track=False)
    hparams, scalars = _hparams_events(result.run_dir)
    assert hparams["train.epochs"] == 3 and hparams["seed"] == 42 and hparams["train.loss"] == "mse"
    assert hparams["model.sequential.layers.0.Dense.units"] == 8
    assert hparams["model.sequential.input_shape"] == "[1]"  # a list: its JSON text
    assert not any(k.startswith("sweep") for k in hparams)
    assert scalars["validation.loss"] == pytest.approx(_metrics(result.run_dir)["validation"]["loss"], rel=1e-6)

    given = run_spec(_trial_spec(tmp_path, "outputs.tensorboard=true"), quiet=True, track=False,
                     hparams={"train.optimizer.SGD.learning_rate": 0.05, "units": 8})
    assert _hparams_events(given.run_dir)[0] == {"train.optimizer.SGD.learning_rate": 0.05, "units": 8}
    assert not (run_spec(_trial_spec(tmp_path), quiet=True, track=False).run_dir / "tensorboard").exists()


def test_an_objective_the_run_does_not_measure_is_refused_at_the_objective(write_spec):
    path, result = _errors(write_spec, "    train.epochs: {int: [1, 3]}\n", objective="validation.los")
    assert result.exit_code == 1
    assert result.output.strip() == (f"{path}:3:14: sweep.objective: the run measures no 'los' on validation "
                                     "(it measures: validation.loss) (did you mean 'loss'?)")
    path, result = _errors(write_spec, "    train.epochs: {int: [1, 3]}\n", objective="train.learning_rate")
    assert result.exit_code == 0, result.output  # train's values are fit's logs: the optimizer's rate too
    path, result = _errors(write_spec, "    train.epochs: {int: [1, 3]}\n", objective="validation.learning_rate")
    assert result.exit_code == 1 and "the run measures no 'learning_rate' on validation" in result.output
    path, result = _errors(write_spec, "    train.epochs: {int: [1, 3]}\n  pruner: none\n",
                           objective="validation.mean_absolute_error")
    assert result.exit_code == 1
    path = write_spec(BASE.replace("validation.loss", "validation.mae") + "    train.epochs: {int: [1, 3]}\n"
                      + "train:\n  metrics: [mae]\n")
    assert cli.invoke(app, ["validate", str(path)]).exit_code == 0


def test_a_sweep_whose_every_trial_failed_exits_3(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    from runner.sweep import search

    def failed(*args, **kwargs):
        return search.SweepResult(tmp_path, None, {"failed": 2})

    monkeypatch.setattr(search, "start", failed)
    result = cli.invoke(app, ["sweep", str(EXAMPLE)])
    assert (result.exit_code, result.stdout) == (3, "trials: 2 failed\n")
    assert result.stderr == f"pipe sweep: no trial completed; each one's message is in {tmp_path / 'trials.csv'}\n"
    monkeypatch.setattr(search, "start", lambda *a, **k: search.SweepResult(tmp_path, None, {"pruned": 2}))
    assert cli.invoke(app, ["sweep", str(EXAMPLE)]).exit_code == 0  # pruned, not failed: the search worked


def test_a_storage_that_cannot_be_opened_is_refused_before_the_sweep_directory(tmp_path):
    pytest.importorskip("optuna")
    outputs = tmp_path / "runs"
    refused = [("sqlite:////nonexist/dir/study.db", "the folder /nonexist/dir does not exist")]
    if importlib.util.find_spec("MySQLdb") is None:  # mysql's default driver
        refused.append(("mysql://x", "its database driver, the module MySQLdb, is not installed: "
                                     "pip install it, or use another storage"))
    for storage, reason in refused:
        result = cli.invoke(app, ["sweep", str(EXAMPLE), "--storage", storage, "--set", f"outputs.dir={outputs}"])
        assert (result.exit_code, result.stderr) == (2, f"pipe sweep: --storage {storage}: {reason}\n")
        assert not outputs.exists()  # not even the spec's folder of sweeps
    assert not os.path.exists("/nonexist")


def test_a_study_that_cannot_be_made_leaves_no_sweep_directory(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")

    def refused(**kwargs):
        raise RuntimeError("the database refused the study")

    monkeypatch.setattr(optuna, "create_study", refused)
    (tmp_path / "runs").mkdir()  # a folder that was there stays
    result = cli.invoke(app, ["sweep", str(EXAMPLE), "--set", f"outputs.dir={tmp_path / 'runs'}"])
    assert result.exit_code == 3
    assert result.stderr == "pipe sweep: failed: RuntimeError: the database refused the study\n"
    assert [p.name for p in tmp_path.rglob("*")] == ["runs"]
