"""Stages: each declared stage is the tf.data.Dataset method of the same name, in order."""

from __future__ import annotations

import functools

import tensorflow as tf

from runner.spec.errors import first_line
from runner.spec.metadata import substitute_metadata
from runner.data.ops import build_map_function
from runner.data.reshuffle import shuffle_by_epoch, stage_seed


def apply_stages(spec, path: tuple, dataset: tf.data.Dataset, stages: list, *, count: int,
                 info: dict, epoch: tf.Variable | None = None) -> tf.data.Dataset:
    """`dataset` through every stage of `stages`, in the declared order.

    Args:
        spec: the Spec, to locate errors.
        path: the stages' path, e.g. `("data", "train", "stages")`.
        count: elements of the split's source, for `all` when tf.data cannot tell.
        info: dataset metadata, for `${data...}` references in map ops.
        epoch: the training loop's epoch, which seeds each epoch's reshuffling (see
            `runner.data.reshuffle`); None: tf.data's own reshuffling.

    Raises:
        SpecError: located at the stage (and its key) that cannot be built.
    """
    for i, stage in enumerate(stages or []):
        ((name, args),) = stage.items()
        where = path + (i, name)
        build = _STAGES.get(name)
        if build is None:
            raise spec.error(where, f"unknown stage '{name}' (known: {', '.join(_STAGES)})")
        if name == "shuffle" and epoch is not None:
            build = functools.partial(_shuffle, epoch=epoch)
        try:
            dataset = build(spec, where, dataset, args or {}, count, info)
        except (ValueError, TypeError, tf.errors.OpError) as e:
            raise spec.error(where, f"{name} failed: {first_line(e)}") from e
    return dataset


def _map(spec, where, dataset, args, count, info):
    ops = substitute_metadata(args["ops"], info, spec, where + ("ops",))
    function = build_map_function(spec, where, ops, dataset.element_spec)
    return dataset.map(function, num_parallel_calls=_autotune(args.get("num_parallel_calls", "autotune")),
                       deterministic=args.get("deterministic"))


def _cache(spec, where, dataset, args, count, info):
    filename = args.get("filename")
    if not filename:
        return dataset.cache()
    file = spec.resolve_path(filename)
    file.parent.mkdir(parents=True, exist_ok=True)
    return dataset.cache(str(file))


def _shuffle(spec, where, dataset, args, count, info, epoch=None):
    size = _size(spec, where + ("buffer_size",), args["buffer_size"], dataset, count)
    reshuffle = args.get("reshuffle_each_iteration", True)
    if reshuffle and epoch is not None:
        return shuffle_by_epoch(dataset, size, stage_seed(spec, where, args.get("seed")), epoch)
    return dataset.shuffle(size, seed=args.get("seed"), reshuffle_each_iteration=reshuffle)


def _batch(spec, where, dataset, args, count, info):
    size = _size(spec, where + ("batch_size",), args["batch_size"], dataset, count)
    return dataset.batch(size, drop_remainder=args.get("drop_remainder", False))


def _prefetch(spec, where, dataset, args, count, info):
    return dataset.prefetch(_autotune(args.get("buffer_size", "autotune")))


def _repeat(spec, where, dataset, args, count, info):
    return dataset.repeat(args.get("count"))


def _take(spec, where, dataset, args, count, info):
    return dataset.take(_positive(spec, where + ("count",), args["count"], "count"))


def _skip(spec, where, dataset, args, count, info):
    return dataset.skip(_positive(spec, where + ("count",), args["count"], "count"))


def _filter(spec, where, dataset, args, count, info):
    element = dataset.element_spec
    if not (isinstance(element, tuple) and len(element) == 2):
        raise spec.error(where, "filter keeps elements by label, but the elements have no label")
    label = element[1]
    if label.shape.rank != 0 or not label.dtype.is_integer:
        raise spec.error(where, f"filter needs one integer label per element (filter before batch); "
                                f"the label has shape {label.shape.as_list()} and dtype {label.dtype.name}")
    keep = "label_in" in args
    values = tf.constant(args["label_in"] if keep else args["label_not_in"], label.dtype)

    def predicate(features, target):
        found = tf.reduce_any(tf.equal(target, values))
        return found if keep else tf.logical_not(found)

    return dataset.filter(predicate)


def _shard(spec, where, dataset, args, count, info):
    shards, index = args["num_shards"], args["index"]
    if not 0 <= index < shards:
        raise spec.error(where + ("index",), f"index {index} must be below num_shards {shards}", at_value=True)
    return dataset.shard(shards, index)


def _unbatch(spec, where, dataset, args, count, info):
    return dataset.unbatch()


_STAGES = {"map": _map, "cache": _cache, "shuffle": _shuffle, "batch": _batch, "prefetch": _prefetch,
           "repeat": _repeat, "take": _take, "skip": _skip, "filter": _filter, "shard": _shard,
           "unbatch": _unbatch}


def _autotune(value):
    return tf.data.AUTOTUNE if value in (None, "autotune") else value


def _size(spec, where, value, dataset, count) -> int:
    """A buffer or batch size; `all` is every element at this point of the pipeline."""
    if value == "all":
        known = int(dataset.cardinality())
        # unknown (after filter) or infinite (after repeat): the split's source size
        return max(1, known if known >= 0 else count)
    return _positive(spec, where, value, where[-1])


def _positive(spec, where, value, name) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise spec.error(where, f"{name} must be positive")
    return value
