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
from runner.train.peers import DEFAULT_STARTUP_TIMEOUT_S, wait_for_peers

_STRATEGY = ("device", "strategy")
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


def setup_devices(spec) -> DeviceSetup:
    """Configure devices from `spec.doc["device"]` and build the distribution strategy.

    Must be called before any other TensorFlow op of the process.

    Raises:
        SpecError: located at the `device:` key at fault (or naming TF_CONFIG) when a
            requested device, strategy or cluster cannot be had on this machine.
    """
    device = spec.doc.get("device") or {}
    name, options = _strategy_options(device.get("strategy", "default"))
    cluster = read_cluster(spec, _STRATEGY, options) if name == "multi_worker_mirrored" else None
    _check_trainable(spec, name, cluster)

    notices = []
    _configure_gpus(spec, device, notices)
    _configure_cpus(spec, device)
    _configure_threads(spec, device)
    precision = _configure_precision(spec, device)
    if name == "tpu":
        strategy = _tpu_strategy(spec, options)
    elif name == "multi_worker_mirrored":
        # Collective ops must be configured before the runtime initialises, so the
        # strategy comes before anything that lists logical devices.
        strategy = _multi_worker(spec, options, cluster)
    else:
        logical = tf.config.list_logical_devices()  # initialises the runtime
        placed = _placement_device(spec, device, logical)
        strategy = _build_strategy(spec, name, options, logical, placed)

    replicas = strategy.num_replicas_in_sync
    jit = bool(device.get("jit_compile", False))
    if jit and replicas > 1 and name != "tpu" and not tf.config.list_logical_devices("GPU"):
        # Found on TF 2.21: XLA refuses a step whose variables live on another CPU device
        # (mirrored) and has no collectives for CPUs (multi_worker_mirrored).
        raise spec.error(
            ("device", "jit_compile"),
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


def check_global_batch(spec, setup: DeviceSetup, batch_size, path) -> None:
    """Reject a global batch size that the replicas cannot share evenly.

    Args:
        batch_size: the `batch` stage's batch_size (an int; "all" is not checked, since
            the whole split in one batch is split as evenly as it can be).
        path: the spec path of that batch_size, for the located error.

    Raises:
        SpecError: at `path`, before any training.
    """
    replicas = setup.num_replicas
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or replicas <= 1:
        return
    if batch_size % replicas:
        nearest = max(replicas, round(batch_size / replicas) * replicas)
        raise spec.error(
            path,
            f"batch_size {batch_size} does not divide by the {replicas} replicas of the "
            f"{setup.strategy_name} strategy: batch_size is the global batch, split evenly "
            f"over the replicas (use a multiple of {replicas}, e.g. {nearest})",
        )


def check_batch_stages(spec, setup: DeviceSetup) -> None:
    """`check_global_batch` on every `batch` stage of every split in the spec."""
    for split, section in (spec.doc.get("data") or {}).items():
        for index, stage in enumerate((section or {}).get("stages") or []):
            if isinstance(stage, dict) and "batch" in stage:
                size = (stage["batch"] or {}).get("batch_size", 128)
                path = ("data", split, "stages", index, "batch", "batch_size")
                check_global_batch(spec, setup, size, path)


def _strategy_options(strategy) -> tuple[str, dict]:
    if isinstance(strategy, str):
        return strategy, {}
    options = dict(strategy or {})
    return options.pop("name", "default"), options


def _check_trainable(spec, name, cluster) -> None:
    """Reject, before touching any device, strategies this runner cannot train under."""
    if name == "parameter_server":
        raise spec.error(
            _STRATEGY,
            "parameter_server is not supported: Keras 3 does not train under "
            "ParameterServerStrategy (it needs a ClusterCoordinator loop); "
            "use multi_worker_mirrored",
        )
    extra = sorted(set(cluster.jobs) - {"chief", "worker"}) if cluster is not None else []
    if extra:
        where = _STRATEGY + ("cluster",) if cluster.source == "spec" else _STRATEGY
        origin = "" if cluster.source == "spec" else "(from TF_CONFIG) "
        raise spec.error(
            where,
            f"multi_worker_mirrored trains on 'chief' and 'worker' tasks only, the cluster "
            f"{origin}also has: {', '.join(extra)}",
        )


def _configure_gpus(spec, device, notices) -> list:
    """Visibility and memory of the GPUs; returns the GPUs left visible."""
    placement = device.get("placement", "auto")
    gpus = tf.config.list_physical_devices("GPU")
    if placement == "cpu":
        _set_visible(spec, ("device", "placement"), [])
        return []
    if placement == "gpu" and not gpus:
        raise spec.error(
            ("device", "placement"),
            "placement 'gpu' asks for a GPU but TensorFlow sees none "
            "(install TensorFlow's GPU build with the gpu extra: pip install '.[gpu]'; or use placement: auto)",
        )
    if not gpus:
        notices.append(_NO_GPU_NOTICE)
        return []
    indices = device.get("visible_devices")
    if indices is not None:
        for position, index in enumerate(indices):
            if not 0 <= index < len(gpus):
                raise spec.error(
                    ("device", "visible_devices", position),
                    f"GPU {index} does not exist: TensorFlow sees {len(gpus)} GPU"
                    f"{'s' if len(gpus) != 1 else ''} (indices 0..{len(gpus) - 1})",
                )
        gpus = [gpus[index] for index in indices]
        _set_visible(spec, ("device", "visible_devices"), gpus)
    limit = device.get("memory_limit_mb")
    growth = device.get("memory_growth")
    if limit is not None and growth:
        raise spec.error(
            ("device", "memory_growth"),
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
            raise spec.error(("device", key), _too_late(e)) from e
    return gpus


def _set_visible(spec, path, gpus) -> None:
    if tf.config.get_visible_devices("GPU") == list(gpus):
        return
    try:
        tf.config.set_visible_devices(list(gpus), "GPU")
    except RuntimeError as e:
        raise spec.error(path, _too_late(e)) from e


def _configure_cpus(spec, device) -> None:
    count = device.get("cpu_devices")
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
        raise spec.error(("device", "cpu_devices"), _too_late(e)) from e


def _configure_threads(spec, device) -> None:
    threading = tf.config.threading
    for key, get, put in (
        ("intra_op_threads", threading.get_intra_op_parallelism_threads,
         threading.set_intra_op_parallelism_threads),
        ("inter_op_threads", threading.get_inter_op_parallelism_threads,
         threading.set_inter_op_parallelism_threads),
    ):
        value = device.get(key)
        if value is None or get() == value:
            continue
        try:
            put(value)
        except RuntimeError as e:
            raise spec.error(("device", key), _too_late(e)) from e


def _configure_precision(spec, device) -> str | None:
    policy = device.get("mixed_precision")
    try:
        # Set even when absent: the policy is global to the process and must not leak
        # from one run into the next.
        keras.mixed_precision.set_global_policy(policy or "float32")
    except ValueError as e:
        raise spec.error(("device", "mixed_precision"), str(e)) from e
    return policy


def _too_late(error) -> str:
    return f"cannot be applied once TensorFlow has initialised its devices ({error})"


def _parse_device(spec, path, text) -> tf.DeviceSpec:
    try:
        parsed = tf.DeviceSpec.from_string(text)
    except ValueError as e:
        raise spec.error(path, f"'{text}' is not a device name (expected e.g. '/GPU:0' or '/CPU:1')") from e
    if parsed.device_type is None or parsed.device_index is None:
        raise spec.error(path, f"'{text}' is not a device name (expected e.g. '/GPU:0' or '/CPU:1')")
    return parsed


def _check_exists(spec, path, text, logical) -> str:
    """The canonical name of a local device, or a located error listing those present."""
    parsed = _parse_device(spec, path, text)
    wanted = (parsed.device_type.upper(), parsed.device_index)
    for device in logical:
        have = tf.DeviceSpec.from_string(device.name)
        if (have.device_type.upper(), have.device_index) == wanted:
            return f"/{wanted[0]}:{wanted[1]}"
    present = ", ".join(f"/{d.device_type}:{tf.DeviceSpec.from_string(d.name).device_index}" for d in logical)
    raise spec.error(path, f"device '{text}' does not exist here (devices: {present})")


def _placement_device(spec, device, logical) -> str | None:
    placement = device.get("placement", "auto")
    if placement in ("auto", "cpu", "gpu"):
        return None
    return _check_exists(spec, ("device", "placement"), placement, logical)


def _local_default_device(logical) -> str:
    return "/GPU:0" if any(d.device_type == "GPU" for d in logical) else "/CPU:0"


def _build_strategy(spec, name, options, logical, placed):
    devices = options.get("devices")
    if name == "default":
        return tf.distribute.OneDeviceStrategy(placed) if placed else tf.distribute.get_strategy()
    if name == "one_device":
        if devices is not None and len(devices) != 1:
            raise spec.error(_STRATEGY + ("devices",), f"one_device takes exactly one device, got {len(devices)}")
        if devices:
            placed = _check_exists(spec, _STRATEGY + ("devices", 0), devices[0], logical)
        return tf.distribute.OneDeviceStrategy(placed or _local_default_device(logical))
    if name == "mirrored":
        return _mirrored(spec, options, logical)
    raise spec.error(_STRATEGY, f"unknown strategy '{name}'")


def _mirrored(spec, options, logical):
    devices = options.get("devices")
    if devices is None:
        kind = "GPU" if any(d.device_type == "GPU" for d in logical) else "CPU"
        names = [d.name for d in logical if d.device_type == kind]
    else:
        if not devices:
            raise spec.error(_STRATEGY + ("devices",), "mirrored needs at least one device")
        names = [_check_exists(spec, _STRATEGY + ("devices", i), d, logical) for i, d in enumerate(devices)]
        if len(set(names)) != len(names):
            raise spec.error(_STRATEGY + ("devices",), "lists the same device twice")
    cross = options.get("cross_device_ops")
    if cross == "nccl" and not all("GPU" in n.upper() for n in names):
        raise spec.error(
            _STRATEGY + ("cross_device_ops",),
            "nccl reduces between GPUs only; these devices include a CPU "
            "(use reduction_to_one or hierarchical_copy, or leave it unset)",
        )
    ops = {
        None: None,
        "nccl": tf.distribute.NcclAllReduce,
        "hierarchical_copy": tf.distribute.HierarchicalCopyAllReduce,
        "reduction_to_one": tf.distribute.ReductionToOneDevice,
    }[cross]
    return tf.distribute.MirroredStrategy(devices=names, cross_device_ops=ops() if ops else None)


def _multi_worker(spec, options, cluster):
    implementation = options.get("communication", "auto").upper()
    communication = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation[implementation]
    )
    resolver = None
    if cluster is not None and cluster.source == "spec":
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster.jobs),
            task_type=cluster.task_type,
            task_id=cluster.task_index,
            rpc_layer="grpc",
        )
    # Without a spec cluster, TensorFlow reads TF_CONFIG (checked by read_cluster);
    # without either, this process is a one-worker cluster.
    # TensorFlow waits for the other tasks without a limit: the chief waits first, with one.
    wait_for_peers(cluster, options.get("startup_timeout_s", DEFAULT_STARTUP_TIMEOUT_S))
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=communication
        )
    except (RuntimeError, ValueError) as e:
        raise spec.error(_STRATEGY, f"cannot start multi_worker_mirrored: {e}") from e


def _tpu_strategy(spec, options):
    # Accepted for TPU hosts (Cloud TPU VM, Colab): without `tpu:` the resolver finds the
    # TPU from the environment. Not exercised on CPU-only machines.
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=options.get("tpu"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise spec.error(_STRATEGY, f"strategy 'tpu' found no TPU: {e}") from e


def _manifest(device, name, strategy, replicas, precision, jit, cluster, is_chief) -> dict:
    manifest = {
        "physical_devices": [d.name for d in tf.config.list_physical_devices()],
        "logical_devices": [d.name for d in tf.config.list_logical_devices()],
        "placement": device.get("placement", "auto"),
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
        return [_local_default_device(tf.config.list_logical_devices())]


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
