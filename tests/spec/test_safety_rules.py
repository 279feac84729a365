"""What `pipe validate` lets through next to what it refuses (the refusals are in tests/hostile/)."""

from __future__ import annotations

import pytest

from runner.spec import load_spec
from tests.spec.test_spec import MINIMAL, errors_of


@pytest.mark.parametrize("extra", [
    "  steps_per_epoch: 3\n",  # bounds an endless train split
    "  callbacks:\n    - CSVLogger: {filename: logs/train.csv}\n    - BackupAndRestore: {backup_dir: backup}\n"
    "    - ModelCheckpoint: {filepath: 'ck/e{epoch:02d}.keras'}\n    - TensorBoard: {log_dir: ./tb}\n"
    "    - EarlyStopping: {monitor: loss, patience: 2}\n",
])
def test_safe_specs_stay_valid(write_spec, extra):
    text = MINIMAL.replace("      - batch: {batch_size: 4}\n", "      - batch: {batch_size: 4}\n      - repeat: {}\n")
    if "steps_per_epoch" not in extra:
        text = text.replace("      - repeat: {}\n", "      - repeat: {count: 2}\n")
    load_spec(write_spec(text + extra))


def test_take_after_repeat_bounds_a_test_split(write_spec):
    test = ("  test:\n    source: {synthetic: {x: {linspace: {start: 0.0, stop: 1.0, num: 4}}, "
            "y: {linear: {w: 1.0, b: 0.0}}}}\n    stages: [{repeat: {}}, {take: {count: 8}}]\nmodel:")
    load_spec(write_spec(MINIMAL.replace("model:", test)))


def test_a_module_model_is_not_a_keras_module_key(write_spec):
    text = MINIMAL.replace("  sequential:\n    input_shape: [1]\n    layers:\n      - Dense: {units: 1}\n",
                           "  module:\n    linear: {w: 5.0, b: 0.0}\n").replace("  epochs: 2", "  loop: custom\n  epochs: 2")
    assert load_spec(write_spec(text)).doc["model"] == {"module": {"linear": {"w": 5.0, "b": 0.0}}}


def test_names_with_dots_are_fine_but_dot_and_dot_dot_are_not(write_spec):
    assert load_spec(write_spec(MINIMAL.replace("name: tiny", "name: v1.2_run-a"))).doc["name"] == "v1.2_run-a"
    path = write_spec(MINIMAL.replace("name: tiny", "name: '..'"))
    assert errors_of(path) == [f"{path}:2:7: name: '..' names no folder of its own (runs would land outside "
                               "outputs.dir): name the pipeline with letters, digits, '_', '.' or '-'"]


def test_an_endless_train_split_names_the_fix(write_spec):
    path = write_spec(MINIMAL.replace("      - batch: {batch_size: 4}\n", "      - batch: {batch_size: 4}\n      - repeat:\n"))
    assert errors_of(path) == [f"{path}:11:9: data.train.stages[1].repeat: repeat without a count makes the train "
                               "split endless and the run would hang: give repeat a count, or set train.steps_per_epoch"]


def test_refused_keras_objects_are_located_at_their_name(write_spec):
    path = write_spec(MINIMAL.replace("      - Dense: {units: 1}", "      - Dense: {units: 1}\n      - Lambda: {function: print}")
                      + "  callbacks: [RemoteMonitor, {class_name: CSVLogger, config: {filename: /etc/passwd}}]\n")
    assert errors_of(path) == [
        f"{path}:16:9: model.sequential.layers[1].Lambda: a Lambda layer runs Python code; a spec holds data, "
        "never code (use map ops or a Keras layer)",
        f"{path}:22:15: train.callbacks[0]: RemoteMonitor sends training logs over the network; a run reaches "
        "nothing outside its run directory",
        f"{path}:22:73: train.callbacks[1].config.filename: '/etc/passwd' is an absolute path: a spec writes only "
        "inside its run directory; give a path relative to it, such as 'logs/train.csv'",
    ]


def test_keras_safe_mode_is_never_turned_off():
    from tests.conftest import REPO

    code = "\n".join(p.read_text() for p in (REPO / "runner").rglob("*.py"))
    assert "enable_unsafe_deserialization" not in code and "safe_mode=False" not in code


def test_a_callback_argument_is_a_path_only_when_its_words_say_so(write_spec):
    # TensorBoard's profile_batch holds "file" inside "profile": a number, not a path.
    load_spec(write_spec(MINIMAL + "  callbacks:\n    - TensorBoard: {log_dir: tb, profile_batch: 0}\n"))


def test_a_callback_file_path_ending_in_a_slash_is_refused_as_a_folder(write_spec):
    path = write_spec(MINIMAL + "  callbacks:\n    - CSVLogger: {filename: 'logs/'}\n"
                                "    - ModelCheckpoint: {filepath: 'ck/', save_weights_only: true}\n"
                                "    - {class_name: ModelCheckpoint, config: {filepath: 'models/'}}\n"
                                "    - TensorBoard: {log_dir: 'tb/'}\n    - BackupAndRestore: {backup_dir: 'backup/'}\n")
    assert errors_of(path) == [  # folders (log_dir, backup_dir) may end in '/'
        f"{path}:22:29: train.callbacks[0].CSVLogger.filename: CSVLogger writes a file: 'logs/' ends in '/', so it "
        "names a folder; give the file's name, such as 'logs/train.csv'",
        f"{path}:23:35: train.callbacks[1].ModelCheckpoint.filepath: ModelCheckpoint writes a file: 'ck/' ends in "
        "'/', so it names a folder; give the file's name, such as 'ck/model.weights.h5'",
        f"{path}:24:56: train.callbacks[2].config.filepath: ModelCheckpoint writes a file: 'models/' ends in "
        "'/', so it names a folder; give the file's name, such as 'models/model.keras'",
    ]


@pytest.mark.parametrize("filepath", ["m{epoch.__class__.__init__.__globals__}.keras", "m{0}.keras",
                                      "{epoch:/>2}_x.keras", "m{epoch.keras"])
def test_a_callback_path_formats_only_plain_names(write_spec, filepath):
    path = write_spec(MINIMAL + f"  callbacks:\n    - ModelCheckpoint: {{filepath: '{filepath}'}}\n")
    (message,) = [m for m in errors_of(path) if "filepath" in m]
    assert "has a {...} field that is not a plain name" in message


def test_a_seed_beyond_32_bits_is_refused_by_validate(write_spec):
    (message,) = errors_of(write_spec(MINIMAL.replace("version: 1\n", "version: 1\nseed: 99999999999999999999999\n")))
    assert "seed: 99999999999999999999999 is greater than the maximum of 4294967295" in message


def test_a_fifo_is_not_read_as_a_spec(tmp_path):
    import os

    from runner.spec import SpecErrors

    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecErrors) as info:
        load_spec(fifo)  # would block forever if it were opened
    assert str(info.value) == f"{fifo}: is not a regular file (a pipe or a device); a spec is a small YAML file"
