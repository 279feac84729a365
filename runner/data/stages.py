"""Stages: each declared stage is the tf.data.Dataset method of the same name, in order."""

from __future__ import annotations

import functools

import tensorflow as tf

from runner.data.cache import cache_file

from runner.spec.errors import first_line
from runner.spec.metadata import substitute_metadata
from runner.data.learned import learn_normalize_ops
from runner.data.ops import build_map_function
from runner.data.batch_augment import augment_elements
from runner.data.reshuffle import shuffle_by_epoch, stage_seed
from runner.data.windows import window_stage

# Stages a validation (or test) fraction inherits from train: deterministic preprocessing only, never
# shuffle, repeat, take/skip/shard (sizes) or augmentation (dropped from map ops).
_INHERITED = ("map", "cache", "batch", "prefetch", "filter", "unbatch", "window")
AUGMENTATION_OPS = ("augment",)


def apply_stages(spec, path: tuple, dataset: tf.data.Dataset, stages: list, *, count: int,
                 info: dict, learned=None, split: str | None = None, positions=None,
                 source_key=None, epoch: tf.Variable | None = None) -> tf.data.Dataset:
    """`dataset` through every stage of `stages`, in the declared order.

    Args:
        spec: the Spec, to locate errors.
        path: the stages' path, e.g. `("data", "train", "stages")`.
        count: elements of the split's source, for `all` when tf.data cannot tell.
        info: dataset metadata, for `${data...}` references in map ops.
        learned: the `Learned` statistics (normalize ops without mean/std); train learns them.
        split: which split this is ("train" learns, the others apply).
        positions: each stage's index in `path` (when `stages` is a selection of them).
        source_key: what the source's elements depend on (`cache.source_key`); with the
            stages before it, it keys a cache file.
        epoch: the training loop's epoch, which seeds each epoch's reshuffling (see
            `runner.data.reshuffle`); None: tf.data's own reshuffling.

    Raises:
        SpecError: located at the stage (and its key) that cannot be built.
    """
    for i, stage in enumerate(stages or []):
        ((name, args),) = stage.items()
        where = path + (i if positions is None else positions[i], name)
        build = _STAGES.get(name)
        if build is None:
            raise spec.error(where, f"unknown stage '{name}' (known: {', '.join(_STAGES)})")
        if name == "cache":
            build = functools.partial(_cache, key=[source_key, stages[:i]])
        if name == "shuffle" and epoch is not None:
            build = functools.partial(_shuffle, epoch=epoch)
        if name == "window":
            build = functools.partial(window_stage, split=split)
        try:
            if name == "map":
                dataset = _map(spec, where, dataset, args, count, info, learned, split, epoch)
                continue
            dataset = build(spec, where, dataset, args or {}, count, info)
        except (ValueError, TypeError, tf.errors.OpError) as e:
            raise spec.error(where, f"{name} failed: {first_line(e)}") from e
    return dataset


def augments(ops: list) -> bool:
    """Whether map `ops` hold an augmentation op (random: new draws on every pass)."""
    return any(next(iter(op)) in AUGMENTATION_OPS for op in ops or [])


def inherited_stages(stages: list) -> tuple[list, list]:
    """(positions, stages) of train's stages that a validation fraction inherits."""
    return _kept_stages(stages, lambda name: name in _INHERITED)


def evaluated_stages(stages: list) -> tuple[list, list]:
    """(positions, stages) of train's stages as evaluation reads train: one pass, as the model
    sees data at inference (no augmentation, no shuffle, no repeat)."""
    return _kept_stages(stages, lambda name: name not in ("shuffle", "repeat"))


def _kept_stages(stages: list, keeps) -> tuple[list, list]:
    """The stages whose names `keeps`, their maps without augment ops, without a cache file
    (it belongs to train's own elements), with their positions in `stages`."""
    positions, kept = [], []
    for i, stage in enumerate(stages):
        ((name, args),) = stage.items()
        if not keeps(name) or (name == "cache" and (args or {}).get("filename")):
            continue
        if name == "map":
            ops = [op for op in args["ops"] if next(iter(op)) not in AUGMENTATION_OPS]
            if not ops:
                continue
            stage = {"map": {**args, "ops": ops}}
        positions.append(i)
        kept.append(stage)
    return positions, kept


def _map(spec, where, dataset, args, count, info, learned=None, split=None, epoch=None):
    ops = substitute_metadata(args["ops"], info, spec, where + ("ops",))
    if learned is not None:
        ops = learn_normalize_ops(spec, where, dataset, ops, learned, split)
    function = build_map_function(spec, where, ops, dataset.element_spec)
    if epoch is not None and augments(ops):
        # Seeded by (seed, epoch, element) rather than by the order parallel calls happen in.
        return augment_elements(dataset, function, stage_seed(spec.sections.seed, where, None), epoch,
                                ".".join(map(str, where)))
    return dataset.map(function, num_parallel_calls=_autotune(args.get("num_parallel_calls", "autotune")),
                       deterministic=args.get("deterministic"))


def _cache(spec, where, dataset, args, count, info, key=None):
    filename = args.get("filename")
    file = cache_file(spec, where, filename, key) if filename else None
    return dataset.cache(file) if file else dataset.cache()


def _shuffle(spec, where, dataset, args, count, info, epoch=None):
    size = _size(spec, where + ("buffer_size",), args["buffer_size"], dataset, count)
    known = int(dataset.cardinality())
    if known >= 0:  # a buffer larger than the split holds nothing more, but tf.data reserves it whole
        size = min(size, max(known, 1))
    reshuffle = args.get("reshuffle_each_iteration", True)
    if reshuffle and epoch is not None:
        return shuffle_by_epoch(dataset, size, stage_seed(spec.sections.seed, where, args.get("seed")), epoch)
    return dataset.shuffle(size, seed=args.get("seed"), reshuffle_each_iteration=reshuffle)


def _batch(spec, where, dataset, args, count, info):
    size = _size(spec, where + ("batch_size",), args["batch_size"], dataset, count)
    known = int(dataset.cardinality())
    if known >= 0 and size > known and not args.get("drop_remainder", False):
        size = max(known, 1)  # the same one batch: tf.data would allocate a batch of the size asked for
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
           "unbatch": _unbatch, "window": window_stage}


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
