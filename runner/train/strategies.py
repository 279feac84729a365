"""The tf.distribute strategy of a run: its name and options from `device.strategy`, checked
against the devices and the cluster this process sees, then built.

Errors are located through the `device` section (`device.error(("strategy", "devices"), ...)`).
"""

from __future__ import annotations

import tensorflow as tf

from runner.train.peers import DEFAULT_STARTUP_TIMEOUT_S, wait_for_peers

STRATEGY = ("strategy",)  # within the device section


def strategy_options(strategy) -> tuple[str, dict]:
    """`device.strategy` as (name, options): a name alone has no options."""
    if isinstance(strategy, str):
        return strategy, {}
    options = dict(strategy or {})
    return options.pop("name", "default"), options


def check_trainable(device, name, cluster) -> None:
    """Reject, before touching any device, strategies this runner cannot train under."""
    if name == "parameter_server":
        raise device.error(
            STRATEGY,
            "parameter_server is not supported: Keras 3 does not train under "
            "ParameterServerStrategy (it needs a ClusterCoordinator loop); "
            "use multi_worker_mirrored",
        )
    extra = sorted(set(cluster.jobs) - {"chief", "worker"}) if cluster is not None else []
    if extra:
        where = STRATEGY + ("cluster",) if cluster.source == "spec" else STRATEGY
        origin = "" if cluster.source == "spec" else "(from TF_CONFIG) "
        raise device.error(
            where,
            f"multi_worker_mirrored trains on 'chief' and 'worker' tasks only, the cluster "
            f"{origin}also has: {', '.join(extra)}",
        )


def _parse_device(device, path, text) -> tf.DeviceSpec:
    try:
        parsed = tf.DeviceSpec.from_string(text)
    except ValueError as e:
        raise device.error(path, f"'{text}' is not a device name (expected e.g. '/GPU:0' or '/CPU:1')") from e
    if parsed.device_type is None or parsed.device_index is None:
        raise device.error(path, f"'{text}' is not a device name (expected e.g. '/GPU:0' or '/CPU:1')")
    return parsed


def _check_exists(device, path, text, logical) -> str:
    """The canonical name of a local device, or a located error listing those present."""
    parsed = _parse_device(device, path, text)
    wanted = (parsed.device_type.upper(), parsed.device_index)
    for local in logical:
        have = tf.DeviceSpec.from_string(local.name)
        if (have.device_type.upper(), have.device_index) == wanted:
            return f"/{wanted[0]}:{wanted[1]}"
    present = ", ".join(f"/{d.device_type}:{tf.DeviceSpec.from_string(d.name).device_index}" for d in logical)
    raise device.error(path, f"device '{text}' does not exist here (devices: {present})")


def placement_device(device, logical) -> str | None:
    """The device `device.placement` names (checked to exist), or None for auto, cpu and gpu."""
    if device.placement in ("auto", "cpu", "gpu"):
        return None
    return _check_exists(device, ("placement",), device.placement, logical)


def local_default_device(logical) -> str:
    return "/GPU:0" if any(d.device_type == "GPU" for d in logical) else "/CPU:0"


def build_strategy(device, name, options, logical, placed):
    """A default, one_device or mirrored strategy over the local devices `logical`."""
    devices = options.get("devices")
    if name == "default":
        return tf.distribute.OneDeviceStrategy(placed) if placed else tf.distribute.get_strategy()
    if name == "one_device":
        if devices is not None and len(devices) != 1:
            raise device.error(STRATEGY + ("devices",), f"one_device takes exactly one device, got {len(devices)}")
        if devices:
            placed = _check_exists(device, STRATEGY + ("devices", 0), devices[0], logical)
        return tf.distribute.OneDeviceStrategy(placed or local_default_device(logical))
    if name == "mirrored":
        return _mirrored(device, options, logical)
    raise device.error(STRATEGY, f"unknown strategy '{name}'")


def _mirrored(device, options, logical):
    devices = options.get("devices")
    if devices is None:
        kind = "GPU" if any(d.device_type == "GPU" for d in logical) else "CPU"
        names = [d.name for d in logical if d.device_type == kind]
    else:
        if not devices:
            raise device.error(STRATEGY + ("devices",), "mirrored needs at least one device")
        names = [_check_exists(device, STRATEGY + ("devices", i), d, logical) for i, d in enumerate(devices)]
        if len(set(names)) != len(names):
            raise device.error(STRATEGY + ("devices",), "lists the same device twice")
    cross = options.get("cross_device_ops")
    if cross == "nccl" and not all("GPU" in n.upper() for n in names):
        raise device.error(
            STRATEGY + ("cross_device_ops",),
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


def multi_worker(device, options, cluster):
    """A MultiWorkerMirroredStrategy for `cluster` (the spec's, else TF_CONFIG's, else one worker)."""
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
        raise device.error(STRATEGY, f"cannot start multi_worker_mirrored: {e}") from e


def tpu_strategy(device, options):
    """A TPUStrategy on the TPU `options` names, or the one the environment finds."""
    # Accepted for TPU hosts (Cloud TPU VM, Colab): without `tpu:` the resolver finds the
    # TPU from the environment. Not exercised on CPU-only machines.
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=options.get("tpu"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        raise device.error(STRATEGY, f"strategy 'tpu' found no TPU: {e}") from e




def distribute(strategy, dataset):
    """`dataset` split between the strategy's replicas, each worker keeping every n-th batch:
    tf.data's default shards by file first, which fails for a source of fewer files than
    workers (one TFRecord file, a pattern matching one)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))
