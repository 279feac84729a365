"""The `device:` section: cluster parsing (no TensorFlow) and setup_devices (in fresh processes).

Logical devices can be configured only once per process, before TensorFlow initialises,
so every setup_devices case runs in a subprocess; compatible cases share one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.spec.cluster import parse_tf_config, read_cluster
from runner.spec.errors import SpecError
from runner.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
version: 1
name: dist_probe
seed: 1
data:
  train:
    source:
      synthetic:
        x: {{linspace: {{start: -2.0, stop: 2.0, num: 64}}}}
        y: {{linear: {{w: 3.0, b: 2.0}}}}
    stages:
      - batch: {{batch_size: {batch}}}
model:
  sequential:
    input_shape: [1]
    layers: [{{Dense: {{units: 1}}}}]
train:
  epochs: 1
  loss: mse
  optimizer: sgd
device:
{device}
"""


def write_spec(folder: Path, name: str, device: str, batch: int = 4) -> Path:
    """A small valid spec whose `device:` body is `device` (YAML, indented here)."""
    path = folder / f"{name}.yaml"
    path.write_text(BASE.format(batch=batch, device=textwrap.indent(textwrap.dedent(device).strip(), "  ")))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------- TF_CONFIG (no TensorFlow)


def test_tf_config_bad_json_names_tf_config():
    with pytest.raises(SpecError) as info:
        parse_tf_config("{cluster: {}}")
    assert str(info.value) == (
        "TF_CONFIG: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"
    )


def test_tf_config_without_cluster():
    with pytest.raises(SpecError) as info:
        parse_tf_config('{"task": {"type": "worker", "index": 0}}')
    assert str(info.value) == (
        'TF_CONFIG: has no \'cluster\' (expected {"cluster": {"worker": ["host:port", ...]}, "task": {...}})'
    )


def test_tf_config_without_task():
    with pytest.raises(SpecError) as info:
        parse_tf_config('{"cluster": {"worker": ["127.0.0.1:2222"]}}')
    assert str(info.value) == (
        'TF_CONFIG: has no \'task\' (expected "task": {"type": "worker", "index": 0})'
    )


def test_tf_config_task_index_out_of_range():
    raw = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}'
    with pytest.raises(SpecError) as info:
        parse_tf_config(raw)
    assert str(info.value) == (
        "TF_CONFIG: task index 2 is out of range: the cluster has 2 'worker' tasks (indices 0..1)"
    )


def test_tf_config_task_type_not_in_cluster():
    raw = '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}'
    with pytest.raises(SpecError) as info:
        parse_tf_config(raw)
    assert str(info.value) == "TF_CONFIG: task type 'chief' is not in the cluster (it has worker)"


def test_tf_config_address_without_port():
    with pytest.raises(SpecError) as info:
        parse_tf_config('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}')
    assert str(info.value) == "TF_CONFIG: 'cluster' 'worker' has 'localhost', expected 'host:port'"


def test_chief_is_worker_zero_unless_a_chief_is_declared():
    workers = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": %d}}'
    assert parse_tf_config(workers % 0).is_chief
    assert not parse_tf_config(workers % 1).is_chief
    with_chief = '{"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "%s", "index": 0}}'
    assert parse_tf_config(with_chief % "chief").is_chief
    assert not parse_tf_config(with_chief % "worker").is_chief
    assert parse_tf_config(with_chief % "worker").num_workers == 2


def test_cluster_read_from_tf_config_env(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path, "mw", "strategy: multi_worker_mirrored"))
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    cluster = read_cluster(spec, ("device", "strategy"), {})
    assert (cluster.task_type, cluster.task_index, cluster.source) == ("worker", 1, "TF_CONFIG")
    monkeypatch.delenv("TF_CONFIG")
    assert read_cluster(spec, ("device", "strategy"), {}) is None


def test_spec_cluster_task_index_out_of_range_is_located(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    path = write_spec(
        tmp_path,
        "mw",
        """
        strategy:
          name: multi_worker_mirrored
          cluster: {worker: ["127.0.0.1:2000", "127.0.0.1:2001"]}
          task: {type: worker, index: 2}
        """,
    )
    spec = load_spec(path)
    with pytest.raises(SpecError) as info:
        read_cluster(spec, ("device", "strategy"), spec.doc["device"]["strategy"])
    assert str(info.value) == (
        f"{path}:24:26: device.strategy.task.index: index 2 is out of range: "
        "the cluster has 2 'worker' tasks (indices 0..1)"
    )


def test_spec_cluster_without_task_is_located(tmp_path):
    path = write_spec(
        tmp_path,
        "mw",
        """
        strategy:
          name: multi_worker_mirrored
          cluster: {worker: ["127.0.0.1:2000"]}
        """,
    )
    spec = load_spec(path)
    with pytest.raises(SpecError) as info:
        read_cluster(spec, ("device", "strategy"), spec.doc["device"]["strategy"])
    assert str(info.value) == (
        f"{path}:21:3: device.strategy: a declared cluster needs a 'task' saying which member "
        "this process is, e.g. task: {type: worker, index: 0} "
        "(set it per process with --set device.strategy.task.index=N)"
    )


# ------------------------------------------------------------ setup_devices (subprocesses)

PROBE = r"""
import json, os, sys
from runner.spec.errors import SpecError
from runner.spec import load_spec
from runner.train.devices import setup_devices, check_batch_stages
import keras

for line in sys.stdin:
    case = json.loads(line)
    os.environ.pop("TF_CONFIG", None)
    if case.get("tf_config") is not None:
        os.environ["TF_CONFIG"] = case["tf_config"]
    result = {"name": case["name"]}
    try:
        spec = load_spec(case["path"], case.get("overrides", []))
        setup = setup_devices(spec)
        result.update(summary=setup.summary, manifest=setup.manifest, replicas=setup.num_replicas,
                      is_chief=setup.is_chief, jit=setup.jit_compile, precision=setup.mixed_precision,
                      policy=keras.mixed_precision.global_policy().name,
                      strategy=type(setup.strategy).__name__)
        check_batch_stages(spec, setup)
    except SpecError as e:
        result["error"] = str(e)
    print("RESULT " + json.dumps(result), flush=True)
"""


def run_probe(cases: list[dict], env: dict | None = None) -> dict:
    """Run setup_devices on each case, in order, in one fresh Python process."""
    lines = "".join(json.dumps(case) + "\n" for case in cases)
    completed = subprocess.run(
        [sys.executable, "-c", PROBE],
        input=lines,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        timeout=300,
    )
    results = {}
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            results[result["name"]] = result
    assert len(results) == len(cases), completed.stderr[-3000:]
    return results


@pytest.fixture(scope="session")
def probe(tmp_path_factory):
    """One process, every case compatible with 2 logical CPU devices, run in this order."""
    folder = tmp_path_factory.mktemp("device_specs")
    two_workers = json.dumps(
        {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}
    )
    cases = [
        # Errors raised before the runtime initialises come first.
        ("gpu", "placement: gpu", {}),
        ("tf_config_bad", "strategy: multi_worker_mirrored", {"tf_config": "{not json"}),
        ("tf_config_range", "strategy: multi_worker_mirrored", {"tf_config": two_workers}),
        ("ps", "strategy: parameter_server", {}),
        ("mw_ps", 'strategy:\n  name: multi_worker_mirrored\n  cluster: {worker: ["h:1"], ps: ["h:2"]}\n  task: {type: worker, index: 0}', {}),
        ("cpu5", 'cpu_devices: 2\nstrategy: {name: mirrored, devices: ["/cpu:0", "/cpu:5"]}', {}),
        ("mirrored", "cpu_devices: 2\nstrategy: mirrored", {}),
        ("odd_batch", "cpu_devices: 2\nstrategy: mirrored", {"batch": 3}),
        ("gpu1", 'placement: "/GPU:1"', {}),
        ("placed_cpu1", 'placement: "/CPU:1"', {}),
        ("nccl", "strategy: {name: mirrored, cross_device_ops: nccl}", {}),
        ("reduce_one", "strategy: {name: mirrored, cross_device_ops: reduction_to_one}", {}),
        ("xla_mirrored", "jit_compile: true\nstrategy: mirrored", {}),
        ("tf_config_ignored", "strategy: mirrored", {"tf_config": two_workers.replace('"index": 2', '"index": 1')}),
        ("bf16", 'mixed_precision: mixed_bfloat16\njit_compile: true\nstrategy: {name: one_device, devices: ["/cpu:1"]}', {}),
        ("after_bf16", "placement: cpu", {}),
        ("cpu3", "cpu_devices: 3", {}),
        ("threads", "intra_op_threads: 1", {}),
    ]
    payload = []
    for name, device, extra in cases:
        path = write_spec(folder, name, device, batch=extra.get("batch", 4))
        payload.append({"name": name, "path": str(path), "tf_config": extra.get("tf_config")})
    results = run_probe(payload)
    results["_folder"] = folder
    return results


slow = pytest.mark.slow


@slow
def test_gpu_asked_for_on_a_machine_without_one(probe):
    assert probe["gpu"]["error"] == (
        f"{probe['_folder']}/gpu.yaml:21:3: device.placement: placement 'gpu' asks for a GPU but "
        "TensorFlow sees none (install TensorFlow's GPU build with the gpu extra: pip install '.[gpu]'; or use placement: auto)"
    )


@slow
def test_absent_device_name_as_placement(probe):
    assert probe["gpu1"]["error"] == (
        f"{probe['_folder']}/gpu1.yaml:21:3: device.placement: device '/GPU:1' does not exist here "
        "(devices: /CPU:0, /CPU:1)"
    )


@slow
def test_mirrored_over_an_impossible_device(probe):
    assert probe["cpu5"]["error"] == (
        f"{probe['_folder']}/cpu5.yaml:22:50: device.strategy.devices[1]: device '/cpu:5' does not "
        "exist here (devices: /CPU:0, /CPU:1)"
    )


@slow
def test_malformed_tf_config_is_named_not_a_spec_line(probe):
    assert probe["tf_config_bad"]["error"] == (
        "TF_CONFIG: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"
    )
    assert probe["tf_config_range"]["error"] == (
        "TF_CONFIG: task index 2 is out of range: the cluster has 2 'worker' tasks (indices 0..1)"
    )


@slow
def test_parameter_server_is_rejected_with_a_reason(probe):
    assert probe["ps"]["error"] == (
        f"{probe['_folder']}/ps.yaml:21:3: device.strategy: parameter_server is not supported: "
        "Keras 3 does not train under ParameterServerStrategy (it needs a ClusterCoordinator loop); "
        "use multi_worker_mirrored"
    )


@slow
def test_multi_worker_cluster_with_parameter_servers_is_rejected(probe):
    assert probe["mw_ps"]["error"] == (
        f"{probe['_folder']}/mw_ps.yaml:23:5: device.strategy.cluster: multi_worker_mirrored trains "
        "on 'chief' and 'worker' tasks only, the cluster also has: ps"
    )


@slow
def test_mirrored_over_two_logical_cpus(probe):
    result = probe["mirrored"]
    assert "error" not in result
    assert result["summary"] == (
        "devices: 1 physical CPU, 2 logical CPU (no GPU visible: running on the CPU); "
        "strategy: mirrored (2 replicas); precision: float32; xla: off"
    )
    assert result["strategy"] == "MirroredStrategy"
    assert result["replicas"] == 2 and result["is_chief"] is True
    manifest = result["manifest"]
    assert manifest["physical_devices"] == ["/physical_device:CPU:0"]
    assert manifest["logical_devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert [d.rsplit("/", 1)[-1] for d in manifest["strategy_devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert (manifest["strategy"], manifest["replicas"], manifest["precision"], manifest["xla"]) == (
        "mirrored", 2, "float32", False
    )
    assert "cluster" not in manifest


@slow
def test_global_batch_must_divide_by_the_replicas(probe):
    assert probe["odd_batch"]["error"] == (
        f"{probe['_folder']}/odd_batch.yaml:11:17: data.train.stages[0].batch.batch_size: batch_size 3 "
        "does not divide by the 2 replicas of the mirrored strategy: batch_size is the global batch, "
        "split evenly over the replicas (use a multiple of 2, e.g. 4)"
    )


@slow
def test_device_name_placement_pins_one_device(probe):
    result = probe["placed_cpu1"]
    assert result["strategy"] == "OneDeviceStrategy"
    assert result["manifest"]["strategy_devices"][0].endswith("device:CPU:1")
    assert "strategy: default (1 replica)" in result["summary"]


@slow
def test_nccl_on_cpus_is_rejected_and_other_reductions_accepted(probe):
    assert probe["nccl"]["error"] == (
        f"{probe['_folder']}/nccl.yaml:21:30: device.strategy.cross_device_ops: nccl reduces between "
        "GPUs only; these devices include a CPU (use reduction_to_one or hierarchical_copy, or leave it unset)"
    )
    assert probe["reduce_one"]["replicas"] == 2


@slow
def test_xla_over_several_cpu_replicas_is_rejected(probe):
    assert probe["xla_mirrored"]["error"] == (
        f"{probe['_folder']}/xla_mirrored.yaml:21:3: device.jit_compile: XLA cannot compile a step "
        "shared by 2 CPU replicas (it has no cross-device variables or collectives for CPUs): "
        "use jit_compile: false, or one device, or GPUs"
    )


@slow
def test_tf_config_without_multi_worker_strategy_is_noted(probe):
    result = probe["tf_config_ignored"]
    assert "strategy: mirrored (2 replicas), TF_CONFIG ignored;" in result["summary"]
    assert result["is_chief"] is True and "cluster" not in result["manifest"]


@slow
def test_mixed_precision_and_xla_then_the_policy_does_not_leak(probe):
    result = probe["bf16"]
    assert result["policy"] == "mixed_bfloat16" and result["precision"] == "mixed_bfloat16"
    assert result["jit"] is True
    assert result["summary"].endswith("strategy: one_device (1 replica); precision: mixed_bfloat16; xla: on")
    assert result["manifest"]["strategy_devices"][0].endswith("device:CPU:1")
    # A later run in the same process without mixed_precision is float32 again.
    assert probe["after_bf16"]["policy"] == "float32"
    assert probe["after_bf16"]["summary"].startswith("devices: 1 physical CPU, 2 logical CPU; strategy: default")


@slow
def test_logical_devices_cannot_change_once_initialised(probe):
    error = probe["cpu3"]["error"]
    prefix = f"{probe['_folder']}/cpu3.yaml:21:3: device.cpu_devices: cannot be applied once TensorFlow has initialised its devices ("
    assert error.startswith(prefix), error
    assert probe["threads"]["error"].startswith(
        f"{probe['_folder']}/threads.yaml:21:3: device.intra_op_threads: cannot be applied once TensorFlow"
    )


@slow
def test_multi_worker_cluster_declared_in_the_spec(tmp_path):
    """A one-worker cluster from the spec (SimpleClusterResolver): this process is its chief."""
    port = free_port()
    path = write_spec(
        tmp_path,
        "mw",
        f"""
        strategy:
          name: multi_worker_mirrored
          communication: ring
          cluster: {{worker: ["127.0.0.1:{port}"]}}
          task: {{type: worker, index: 0}}
        """,
    )
    # A cluster declared in the spec wins over TF_CONFIG.
    elsewhere = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}})
    result = run_probe([{"name": "mw", "path": str(path), "tf_config": elsewhere}])["mw"]
    assert "error" not in result, result
    assert result["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy's class
    assert result["replicas"] == 1 and result["is_chief"] is True
    assert result["summary"] == (
        "devices: 1 physical CPU, 1 logical CPU (no GPU visible: running on the CPU); "
        "strategy: multi_worker_mirrored (1 replica), task worker:0 (chief) of 1 workers; "
        "precision: float32; xla: off"
    )
    assert result["manifest"]["cluster"] == {"worker": [f"127.0.0.1:{port}"]}
    assert result["manifest"]["task"] == {"type": "worker", "index": 0}
    assert result["manifest"]["cluster_source"] == "spec"
