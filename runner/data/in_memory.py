"""A split as tensors in memory: its deterministic stages run once, the rest as settings.

The stages before the first `shuffle` or `batch` (source, `map`, `cache`, `filter`,
`take`, `skip`, `shard`, a counted `repeat`) give the same elements on every epoch, so they
can run once and be kept as tensors; when they end in `map` ops that act on each element
alone and grow it (uint8 pixels cast to float32), what is kept is the elements before those
maps, and the maps run on each batch instead. What follows — the shuffle, the batch size,
`drop_remainder` and train's `augment` maps — is what an in-memory training engine must
reproduce itself. A split whose later stages do more than that (a `map` after `batch`, a
shuffle of batches, an endless `repeat`, ...) is not reproducible that way, and
`plan_in_memory` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from runner.data.batch_augment import batch_augment
from runner.data.counting import element_count
from runner.data.ops import build_map_function
from runner.data.learned import learn_normalize_ops
from runner.data.stages import _size, apply_stages, augments, inherited_stages
from runner.spec.metadata import substitute_metadata

# Stages that give the same elements, in the same order, on every pass.
_DETERMINISTIC = ("map", "cache", "filter", "take", "skip", "shard", "window")
# Stages after the batch that change nothing about the elements or their order.
_TRANSPARENT = ("prefetch", "cache")
# Map ops whose value on a batch, in a compiled training step, is bit for bit their value on
# each element (elementwise arithmetic exactly rounded, or moving values without arithmetic).
_PER_BATCH_OPS = ("cast", "scale", "normalize", "clip", "reshape", "flatten", "transpose", "slice", "one_hot")


@dataclass
class InMemoryPlan:
    """How to hold a split in memory and batch it as its stages would.

    `prefix` is the dataset of single elements after the deterministic stages;
    `shuffle_seed` is the shuffle stage's own seed (None: the spec's seed).
    """

    prefix: tf.data.Dataset
    count: int  # elements of the prefix (counted after `filter`)
    batch_size: int
    drop_remainder: bool
    shuffle: bool
    shuffle_seed: int | None
    reshuffle_each_iteration: bool
    nbytes: int  # bytes the held elements take as tensors
    # When the prefix ends in `map` and `cache` stages: the elements before those maps and
    # the maps' functions, applied to many elements at once (vectorised) rather than one by one.
    source: tf.data.Dataset | None = None
    maps: list | None = None
    tensors: object = None  # the source's elements, when it holds them in memory
    # Whether `maps` run on each gathered batch inside the training graph (the split held
    # as its source gives it, uint8 pixels rather than float32) or once, before training.
    per_batch: bool = False
    augment: object = None  # a training split's `augment` maps, run on each batch (`BatchAugment`)
    # The model's lookups of its string inputs (`runner.models.string_front`): the split is
    # held as their output (token ids), looked up once, instead of as strings.
    encode: object = None

    def materialise(self):
        """The held elements stacked into tensors: (features, labels) or features (the
        source's elements when the maps run per batch, else the prefix's)."""
        if self.maps is None:
            elements = tf.data.Dataset.get_single_element(self.prefix.batch(max(self.count, 1)))
            return elements if self.encode is None else (self.encode(elements[0]), elements[1])
        if self.tensors is not None:  # already stacked: no tf.data pass over every element
            elements = self.tensors
        else:
            elements = tf.data.Dataset.get_single_element(self.source.batch(max(self.count, 1)))
        if self.per_batch:
            return elements
        elements = self.apply_maps(elements)
        return elements if self.encode is None else (self.encode(elements[0]), elements[1])

    def apply_maps(self, elements):
        """The map functions on a stack of elements (a whole split or a batch): the values
        mapping each element alone gives, since every map op acts on one element."""
        for function in self.maps or []:
            elements = tf.vectorized_map(lambda e, f=function: f(*e) if isinstance(e, tuple) else f(e), elements)
        return elements

    @property
    def batch_map(self):
        """What turns a gathered batch of held elements into the batch the stages give, or None."""
        return self.apply_maps if self.per_batch else None


def plan_in_memory(spec, datasets, split: str, front=None) -> tuple[InMemoryPlan | None, str]:
    """The in-memory plan of `split`, or None and the reason it has none.

    Args:
        datasets: the built `Datasets` (its `sources` are reused, not read again).
        front: the model's lookups of its string inputs (`string_front`), or None and why
            it has none: string features are then held as the lookups' output.
    """
    source = datasets.sources.get(split)
    if source is None:
        return None, f"no {split} split"
    data = spec.sections.data
    stages, path = list(data.split(split).stages), ("data", split, "stages")
    positions = list(range(len(stages)))  # each stage's index under `path`, for messages
    if data.split(split).inherits_train_stages:
        # A fraction of train takes train's deterministic preprocessing, as build_datasets does.
        positions, stages = inherited_stages(list(data.train.stages))
        path = ("data", "train", "stages")
    boundary = _prefix_length(stages)
    learned = datasets.learned
    if learned is not None:
        learned.restart()  # the statistics train learned while the datasets were built
    prefix = apply_stages(spec, path, source.make(), stages[:boundary], count=source.count, info=datasets.info,
                          learned=learned, split=split, positions=positions)
    settings, reason = _batching(spec, path, stages, positions, boundary, prefix, source.count, split)
    if settings is None:
        return None, reason
    augments = settings.pop("augments")
    front, why_not = front if front is not None else (None, "")
    encode, held_spec = None, prefix.element_spec
    if front is not None and _has_strings(prefix.element_spec) and isinstance(held_spec, tuple):
        encode, held_spec = front.encode, (front.encoded_spec(held_spec[0]), held_spec[1])
    nbytes, reason = _element_bytes(held_spec)
    if nbytes is None:
        reason = f"{reason} ({why_not})" if why_not and reason == "string elements" else reason
        return None, f"{_origin(path, stages[:boundary], positions)}: {reason}"
    count = element_count(prefix)  # after `filter`: counted, not the source's size
    if count is None:
        return None, f"{'.'.join(map(str, path))}: an endless repeat before the batch"
    plan = InMemoryPlan(prefix=prefix, count=count, nbytes=nbytes * count, encode=encode, **settings)
    if augments:
        functions = _map_functions(spec, path, [stages[i] for i in augments], [positions[i] for i in augments],
                                   prefix, datasets.info)
        plan.augment = batch_augment(functions, prefix.element_spec,
                                     f"{'.'.join(map(str, path))}[{positions[augments[0]]}]")
    maps_from = _trailing_maps(stages[:boundary])
    if maps_from < boundary:
        if learned is not None:
            learned.restart()
        plan.source = apply_stages(spec, path, source.make(), stages[:maps_from], count=source.count,
                                   info=datasets.info, learned=learned, split=split, positions=positions)
        plan.tensors = source.tensors() if maps_from == 0 and source.tensors is not None else None
        held, _ = _element_bytes(plan.source.element_spec)
        # Held as the source gives them only when that is smaller, and only for ops that give
        # the same values on a batch as on each element (no resampling, no powers XLA may expand).
        if encode is None and held is not None and held < nbytes and _batchable(stages[maps_from:boundary]):
            plan.per_batch, plan.nbytes = True, held * count
        plan.maps = _map_functions(spec, path, stages[maps_from:boundary], positions[maps_from:], plan.source,
                                   datasets.info, learned, split, _read_at_run_time())
        if plan.per_batch:  # made here, outside any graph or replica: the variables of `_read_at_run_time`
            signature = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape], s.dtype),
                                              plan.source.element_spec)
            tf.function(plan.apply_maps, autograph=False).get_concrete_function(signature)
    return plan, ""


def _read_at_run_time():
    """A `constant(value, dtype)` for map ops applied to many elements in a graph.

    Grappler (in `tf.vectorized_map`'s graph) and XLA (in a compiled training step) turn a
    division by a constant into a multiplication by its reciprocal, which rounds differently
    (x / 255 and x * (1 / 255) differ in the last bit for some x): a value held in a variable
    is read when the graph runs, so it divides as tf.data's map of one element does.
    """
    made = {}

    def constant(value, dtype):
        key = (repr(value), dtype)
        if key not in made:
            with tf.init_scope():
                made[key] = tf.Variable(value, dtype=dtype, trainable=False)
        return tf.convert_to_tensor(made[key])

    return constant


def _origin(path, stages, positions) -> str:
    """Where the prefix's elements take their form: its last `map` stage, else the source."""
    for i in reversed(range(len(stages))):
        if "map" in stages[i]:
            return f"{'.'.join(map(str, path))}[{positions[i]}]"
    return f"data.{path[1]}.source"


def _trailing_maps(stages: list) -> int:
    """Where the run of `map` and `cache` stages that ends the prefix begins."""
    start = len(stages)
    while start and next(iter(stages[start - 1])) in ("map", "cache"):
        start -= 1
    return start


def _batchable(stages: list) -> bool:
    return all(next(iter(op)) in _PER_BATCH_OPS for stage in stages if "map" in stage
               for op in stage["map"]["ops"])


def _map_functions(spec, path, stages, positions, dataset, info, learned=None, split=None,
                   constant=tf.constant) -> list:
    """The element functions of the `map` stages, in order (`cache` changes no element)."""
    functions = []
    element_spec = dataset.element_spec
    for i, stage in enumerate(stages):
        ((name, args),) = stage.items()
        if name == "map":
            where = path + (positions[i], name)
            ops = substitute_metadata(args["ops"], info, spec, where + ("ops",))
            if learned is not None:  # normalize ops without mean/std take train's learned ones
                ops = learn_normalize_ops(spec, where, dataset, ops, learned, split)
            functions.append(build_map_function(spec, where, ops, element_spec, constant))
    return functions


def _prefix_length(stages: list) -> int:
    for i, stage in enumerate(stages):
        ((name, args),) = stage.items()
        counted_repeat = name == "repeat" and (args or {}).get("count") is not None
        if (name not in _DETERMINISTIC and not counted_repeat) or _augments(name, args):
            return i
    return len(stages)


def _augments(name, args) -> bool:
    """A map with `augment` ops draws new randomness every epoch: it cannot be held in memory."""
    return name == "map" and augments((args or {}).get("ops"))


def _batching(spec, path, stages, positions, boundary, prefix, count, split="train"):
    """(shuffle and batch settings, "") from the stages after the prefix, or (None, reason).

    The settings' `augments` are the indices of the training split's maps of `augment` ops
    before its batch, which the fused step runs on each batch (`runner.data.batch_augment`).
    """
    settings = {"shuffle": False, "shuffle_seed": None, "reshuffle_each_iteration": True, "augments": []}
    batch_size = None
    for i in range(boundary, len(stages)):
        ((name, args),) = stages[i].items()
        args = args or {}
        where = f"{'.'.join(map(str, path))}[{positions[i]}]"
        if name == "shuffle" and batch_size is None and not settings["shuffle"]:
            buffer = _size(spec, path + (positions[i], name, "buffer_size"), args["buffer_size"], prefix, count)
            if buffer < _known_count(prefix, count):
                return None, f"{where}: a shuffle buffer of {buffer} is smaller than the split, a different order"
            settings.update(shuffle=True, shuffle_seed=args.get("seed"),
                            reshuffle_each_iteration=args.get("reshuffle_each_iteration", True))
        elif name == "batch" and batch_size is None:
            batch_size = _size(spec, path + (positions[i], name, "batch_size"), args["batch_size"], prefix, count)
            settings["drop_remainder"] = bool(args.get("drop_remainder", False))
        elif (batch_size is not None and name in _TRANSPARENT) or name == "prefetch":
            continue
        elif name == "map" and _augments(name, args) and batch_size is None:
            if split != "train":
                return None, f"{where}: a 'map' stage with augment ops on {split} (the fused step augments train only)"
            if not all(next(iter(op)) == "augment" for op in args["ops"]):
                return None, (f"{where}: a 'map' stage with augment and other ops (the fused step runs maps of "
                              "augment ops alone)")
            settings["augments"].append(i)
        elif batch_size is not None or settings["shuffle"]:
            after = "batch" if batch_size is not None else "shuffle"
            return None, f"{where}: a '{name}' stage after {after} cannot run in memory"
        else:
            return None, f"{where}: a '{name}' stage (not the same elements on every pass) cannot run in memory"
    if batch_size is None:
        return None, f"data.{path[1]}: no batch stage"
    return {**settings, "batch_size": batch_size}, ""


def _known_count(prefix, count) -> int:
    known = int(prefix.cardinality())
    return known if known >= 0 else count


def _has_strings(element_spec) -> bool:
    return any(s.dtype == tf.string for s in tf.nest.flatten(element_spec))


def _element_bytes(element_spec) -> tuple[int | None, str]:
    """Bytes of one element, or None and why it has no fixed size."""
    total = 0
    for spec in tf.nest.flatten(element_spec):
        if not isinstance(spec, tf.TensorSpec) or not spec.shape.is_fully_defined():
            return None, "elements of varying shape"
        if spec.dtype == tf.string:
            return None, "string elements"
        total += int(np.prod(spec.shape.as_list(), dtype=np.int64)) * spec.dtype.size
    return total, ""
