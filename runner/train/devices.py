"""Device placement and distribution: the `device:` section of a spec.

`setup_devices` runs once, first thing in a run: visible devices, memory, logical CPU
devices and threads can only be configured before the TensorFlow runtime initialises, and
a multi-worker strategy must exist before any other op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from runner.spec.cluster import Cluster, read_cluster
from runner.spec.sections import section
from runner.train.strategies import (STRATEGY, build_strategy, check_trainable, local_default_device, multi_worker,
                                     placement_device, strategy_options, tpu_strategy)

_NO_GPU_NOTICE = "no GPU visible: running on the CPU"


@dataclass
class DeviceSetup:
    """What `setup_devices` configured, for the training loops and the run manifest."""

    strategy: tf.distribute.Strategy
    num_replicas: int
    is_chief: bool
    jit_compile: bool
    mixed_precision: str | None
    summary: str
    manifest: dict
    strategy_name: str = "default"
    cluster: Cluster | None = None


def setup_devices(device) -> DeviceSetup:
    """Configure devices from the `device` section and build the distribution strategy.

    Must be called before any other TensorFlow op of the process.

    Args:
        device: the spec's `DeviceConfig` (`spec.sections.device`); a Spec is taken too.

    Raises:
        SpecError: located at the `device:` key at fault (or naming TF_CONFIG) when a
            requested device, strategy or cluster cannot be had on this machine.
    """
    device = section(device, "device")
    name, options = strategy_options(device.strategy)
    cluster = read_cluster(device, STRATEGY, options) if name == "multi_worker_mirrored" else None
    check_trainable(device, name, cluster)

    notices = []
    _configure_gpus(device, notices)
    _configure_cpus(device)
    _configure_threads(device)
    precision = _configure_precision(device)
    if name == "tpu":
        strategy = tpu_strategy(device, options)
    elif name == "multi_worker_mirrored":
        # Collective ops must be configured before the runtime initialises, so the
        # strategy comes before anything that lists logical devices.
        strategy = multi_worker(device, options, cluster)
    else:
        logical = tf.config.list_logical_devices()  # initialises the runtime
        placed = placement_device(device, logical)
        strategy = build_strategy(device, name, options, logical, placed)

    replicas = strategy.num_replicas_in_sync
    jit = bool(device.jit_compile)
    if jit and replicas > 1 and name != "tpu" and not tf.config.list_logical_devices("GPU"):
        # Found on TF 2.21: XLA refuses a step whose variables live on another CPU device
        # (mirrored) and has no collectives for CPUs (multi_worker_mirrored).
        raise device.error(
            "jit_compile",
            f"XLA cannot compile a step shared by {replicas} CPU replicas (it has no "
            "cross-device variables or collectives for CPUs): use jit_compile: false, or "
            "one device, or GPUs",
        )
    is_chief = cluster.is_chief if cluster is not None else True
    manifest = _manifest(device, name, strategy, replicas, precision, jit, cluster, is_chief)
    summary = _summary(manifest, name, replicas, precision, jit, cluster, notices)
    return DeviceSetup(
        strategy=strategy,
        num_replicas=replicas,
        is_chief=is_chief,
        jit_compile=jit,
        mixed_precision=precision,
        summary=summary,
        manifest=manifest,
        strategy_name=name,
        cluster=cluster,
    )


def check_global_batch(split, setup: DeviceSetup, batch_size, path) -> None:
    """Reject a global batch size that the replicas cannot share evenly.

    Args:
        split: the section `path` is in (a `SplitConfig`), or the Spec with `path` from its root.
        batch_size: the `batch` stage's batch_size (an int; "all" is not checked, since
            the whole split in one batch is split as evenly as it can be).
        path: the path of that batch_size, for the located error.

    Raises:
        SpecError: at `path`, before any training.
    """
    replicas = setup.num_replicas
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or replicas <= 1:
        return
    if batch_size % replicas:
        nearest = max(replicas, round(batch_size / replicas) * replicas)
        raise split.error(
            path,
            f"batch_size {batch_size} does not divide by the {replicas} replicas of the "
            f"{setup.strategy_name} strategy: batch_size is the global batch, split evenly "
            f"over the replicas (use a multiple of {replicas}, e.g. {nearest})",
        )


def check_batch_stages(data, setup: DeviceSetup) -> None:
    """`check_global_batch` on every `batch` stage of every split of `data` (a `DataConfig`, or a Spec)."""
    for split in section(data, "data").splits.values():
        for index, stage in enumerate(split.stages):
            if isinstance(stage, dict) and "batch" in stage:
                size = (stage["batch"] or {}).get("batch_size", 128)
                check_global_batch(split, setup, size, ("stages", index, "batch", "batch_size"))


def _configure_gpus(device, notices) -> list:
    """Visibility and memory of the GPUs; returns the GPUs left visible."""
    placement = device.placement
    gpus = tf.config.list_physical_devices("GPU")
    if placement == "cpu":
        _set_visible(device, ("placement",), [])
        return []
    if placement == "gpu" and not gpus:
        raise device.error(
            "placement",
            "placement 'gpu' asks for a GPU but TensorFlow sees none "
            "(install TensorFlow's GPU build with the gpu extra: pip install '.[gpu]'; or use placement: auto)",
        )
    if not gpus:
        notices.append(_NO_GPU_NOTICE)
        return []
    indices = device.visible_devices
    if indices is not None:
        for position, index in enumerate(indices):
            if not 0 <= index < len(gpus):
                raise device.error(
                    ("visible_devices", position),
                    f"GPU {index} does not exist: TensorFlow sees {len(gpus)} GPU"
                    f"{'s' if len(gpus) != 1 else ''} (indices 0..{len(gpus) - 1})",
                )
        gpus = [gpus[index] for index in indices]
        _set_visible(device, ("visible_devices",), gpus)
    limit = device.memory_limit_mb
    growth = device.memory_growth
    if limit is not None and growth:
        raise device.error(
            "memory_growth",
            "memory_growth and memory_limit_mb exclude each other: a GPU either grows its "
            "memory on demand or gets a fixed limit (remove one of them)",
        )
    for gpu in gpus:
        try:
            if limit is not None:
                config = [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
                if tf.config.get_logical_device_configuration(gpu) != config:
                    tf.config.set_logical_device_configuration(gpu, config)
            elif growth is not False:  # grow on demand unless told otherwise
                if not tf.config.experimental.get_memory_growth(gpu):
                    tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as e:
            key = "memory_limit_mb" if limit is not None else "memory_growth"
            raise device.error(key, _too_late(e)) from e
    return gpus


def _set_visible(device, path, gpus) -> None:
    if tf.config.get_visible_devices("GPU") == list(gpus):
        return
    try:
        tf.config.set_visible_devices(list(gpus), "GPU")
    except RuntimeError as e:
        raise device.error(path, _too_late(e)) from e


def _configure_cpus(device) -> None:
    count = device.cpu_devices
    if count is None:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as e:
        raise device.error("cpu_devices", _too_late(e)) from e


def _configure_threads(device) -> None:
    threading = tf.config.threading
    for key, get, put in (
        ("intra_op_threads", threading.get_intra_op_parallelism_threads,
         threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", threading.get_inter_op_parallelism_threads,
         threading.set_inter_op_parallelism_threads),
    ):
        value = getattr(device, key)
        if value is None or get() == value:
            continue
        try:
            put(value)
        except RuntimeError as e:
            raise device.error(key, _too_late(e)) from e


def _configure_precision(device) -> str | None:
    policy = device.mixed_precision
    try:
        # Set even when absent: the policy is global to the process and must not leak
        # from one run into the next.
        keras.mixed_precision.set_global_policy(policy or "float32")
    except ValueError as e:
        raise device.error("mixed_precision", str(e)) from e
    return policy


def _too_late(error) -> str:
    return f"cannot be applied once TensorFlow has initialised its devices ({error})"


def _manifest(device, name, strategy, replicas, precision, jit, cluster, is_chief) -> dict:
    manifest = {
        "physical_devices": [d.name for d in tf.config.list_physical_devices()],
        "logical_devices": [d.name for d in tf.config.list_logical_devices()],
        "placement": device.placement,
        "strategy": name,
        "strategy_devices": _strategy_devices(strategy),
        "replicas": replicas,
        "precision": precision or "float32",
        "xla": jit,
        "is_chief": is_chief,
    }
    if cluster is not None:
        manifest.update(cluster.as_dict())
    return manifest


def _strategy_devices(strategy) -> list:
    try:
        return list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy places ops the usual way: GPU:0 if any
        return [local_default_device(tf.config.list_logical_devices())]


def _is_own(name, cluster) -> bool:
    parsed = tf.DeviceSpec.from_string(name)
    return parsed.job is None or (parsed.job == cluster.task_type and parsed.task == cluster.task_index)


def _count(names, prefix) -> str:
    counts = {}
    for n in names:
        kind = n.rsplit(":", 2)[-2]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{c} {prefix} {k}" for k, c in counts.items())


def _summary(manifest, name, replicas, precision, jit, cluster, notices) -> str:
    logical = manifest["logical_devices"]
    if cluster is not None:  # a worker lists every task's devices; count only its own
        logical = [n for n in logical if _is_own(n, cluster)]
    devices = _count(manifest["physical_devices"], "physical") + ", " + _count(logical, "logical")
    if notices:
        devices += f" ({'; '.join(notices)})"
    strategy = f"{name} ({replicas} replica{'s' if replicas != 1 else ''})"
    if cluster is None and os.environ.get("TF_CONFIG", "").strip() and name != "multi_worker_mirrored":
        # A scheduler (e.g. a Kubeflow TFJob) declared a cluster, but this run trains alone.
        strategy += ", TF_CONFIG ignored"
    if cluster is not None:
        role = " (chief)" if cluster.is_chief else ""
        strategy += f", task {cluster.task_type}:{cluster.task_index}{role} of {cluster.num_workers} workers"
    return (
        f"devices: {devices}; strategy: {strategy}; "
        f"precision: {precision or 'float32'}; xla: {'on' if jit else 'off'}"
    )
