"""The cluster a multi-worker run belongs to: from the spec or from TF_CONFIG.

Parsed and checked here, without TensorFlow, so that a malformed cluster is reported as
one line naming where it came from (a spec key, or the TF_CONFIG variable) before any
worker starts waiting for the others.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from runner.spec.errors import SpecError

_TASK_TYPES = ("chief", "worker", "ps", "evaluator")


@dataclass(frozen=True)
class Cluster:
    """Every task's address, and which task this process is."""

    jobs: dict  # {"worker": ["host:port", ...], "chief": [...], ...}
    task_type: str
    task_index: int
    source: str  # "spec" or "TF_CONFIG"

    @property
    def is_chief(self) -> bool:
        """The chief writes the outputs: the `chief` task, else worker 0."""
        if "chief" in self.jobs:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def num_workers(self) -> int:
        """Tasks that train: chief plus workers."""
        return len(self.jobs.get("chief", [])) + len(self.jobs.get("worker", []))

    def as_dict(self) -> dict:
        return {
            "cluster": {job: list(addresses) for job, addresses in self.jobs.items()},
            "task": {"type": self.task_type, "index": self.task_index},
            "cluster_source": self.source,
        }


def read_cluster(spec, strategy_path: tuple, options: dict) -> Cluster | None:
    """The cluster of this run, or None when neither the spec nor TF_CONFIG declares one.

    Args:
        spec: what locates its errors: the loaded Spec, or the `device` section
            (anything with `.error(path, message)`).
        strategy_path: where the strategy is in it, e.g. ("device", "strategy") in the
            Spec, ("strategy",) in the device section.
        options: the long-form strategy mapping (may hold `cluster` and `task`).

    Raises:
        SpecError: located at the spec key, or naming TF_CONFIG, when the cluster is malformed.
    """
    if options.get("cluster") is not None:
        return _cluster_from_spec(spec, strategy_path, options)
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    return parse_tf_config(raw)


def parse_tf_config(raw: str) -> Cluster:
    """The Cluster held by a TF_CONFIG value.

    Raises:
        SpecError: naming TF_CONFIG, for bad JSON, a missing cluster or task, or a task
            that is not in the cluster.
    """
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _tf_config_error(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    if not isinstance(config, dict):
        raise _tf_config_error(f"must be a JSON object with 'cluster' and 'task', got {_kind(config)}")
    cluster = config.get("cluster")
    task = config.get("task")
    if not cluster:
        raise _tf_config_error(
            'has no \'cluster\' (expected {"cluster": {"worker": ["host:port", ...]}, "task": {...}})'
        )
    if not task:
        raise _tf_config_error('has no \'task\' (expected "task": {"type": "worker", "index": 0})')
    jobs = _check_jobs(cluster, _tf_config_error, "cluster")
    if not isinstance(task, dict):
        raise _tf_config_error(
            f'\'task\' must be an object like {{"type": "worker", "index": 0}}, got {_kind(task)}'
        )
    task_type, task_index = task.get("type"), task.get("index", 0)
    problem = _task_problem(jobs, task_type, task_index)
    if problem:
        raise _tf_config_error(f"task {problem}")
    if "rpc_layer" in config and not isinstance(config["rpc_layer"], str):
        raise _tf_config_error(f"'rpc_layer' must be a string such as \"grpc\", got {_kind(config['rpc_layer'])}")
    return Cluster(jobs, task_type, task_index, "TF_CONFIG")


def _cluster_from_spec(spec, strategy_path, options) -> Cluster:
    cluster_path = strategy_path + ("cluster",)

    def cluster_error(message):
        return spec.error(cluster_path, message)

    jobs = _check_jobs(options["cluster"], cluster_error, None)
    task = options.get("task")
    if task is None:
        raise spec.error(
            strategy_path,
            "a declared cluster needs a 'task' saying which member this process is, "
            "e.g. task: {type: worker, index: 0} (set it per process with "
            "--set device.strategy.task.index=N)",
        )
    task_type, task_index = task.get("type", "worker"), task.get("index", 0)
    problem = _task_problem(jobs, task_type, task_index)
    if problem:
        key = "type" if task_type not in jobs else "index"
        raise spec.error(strategy_path + ("task", key), problem)
    return Cluster(jobs, task_type, task_index, "spec")


# host:port, the host a name, IPv4 address or [IPv6] address; the port a number
_ADDRESS = re.compile(r"([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")


def _check_jobs(cluster, make_error, prefix) -> dict:
    where = f"'{prefix}' " if prefix else ""
    if not isinstance(cluster, dict):
        raise make_error(f"{where}must map task types to lists of 'host:port', got {_kind(cluster)}")
    jobs = {}
    for job, addresses in cluster.items():
        if job not in _TASK_TYPES:
            raise make_error(f"{where}has an unknown task type '{job}' (expected one of {', '.join(_TASK_TYPES)})")
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list) or not addresses:
            raise make_error(f"{where}'{job}' must be a non-empty list of 'host:port'")
        for address in addresses:
            if not isinstance(address, str) or ":" not in address:
                raise make_error(f"{where}'{job}' has {address!r}, expected 'host:port'")
            found = _ADDRESS.fullmatch(address)
            if not found or int(found[2]) > 65535:
                raise make_error(f"{where}'{job}' has {address!r}, expected 'host:port' (a host name or "
                                 "address, and a port 0 to 65535)")
        jobs[job] = list(addresses)
    if "worker" not in jobs and "chief" not in jobs:
        raise make_error(f"{where}declares no 'worker' or 'chief' task")
    return jobs


def _task_problem(jobs, task_type, task_index) -> str | None:
    if task_type not in jobs:
        return f"type {task_type!r} is not in the cluster (it has {', '.join(sorted(jobs))})"
    if not isinstance(task_index, int) or isinstance(task_index, bool):
        return f"index must be an integer, got {task_index!r}"
    count = len(jobs[task_type])
    if not 0 <= task_index < count:
        tasks = "task" if count == 1 else "tasks"
        return (
            f"index {task_index} is out of range: the cluster has {count} '{task_type}' {tasks} "
            f"(indices 0..{count - 1})"
        )
    return None


def _tf_config_error(message) -> SpecError:
    # Not a spec mistake: the environment variable is the place to fix, so it is named
    # instead of a spec line.
    return SpecError(f"TF_CONFIG: {message}")


def _kind(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
