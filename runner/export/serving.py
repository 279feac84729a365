"""The function an exported model serves: raw inputs in, the run's preprocessing, named outputs out.

What `pipe predict` does with a raw file, in one TensorFlow graph: the source's raw element
(IDX pixels as uint8, a CSV's columns as numbers and text) goes through the tabular encoding
train learned (fills, vocabularies, one-hot), the prediction split's `map` ops with the
`normalize` statistics of the run's preprocessing.json, then the model in inference mode.
The outputs are named: probabilities and class index (and class name when the run knows the
class names) for classifiers, the prediction for regressions; one set per model output.

Everything comes from the run directory (its spec.yaml, preprocessing.json, manifest), never
from the spec file the run started from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from runner.data.learned import learn_normalize_ops, load_learned
from runner.data.ops import build_map_function
from runner.data.sources import load_source
from runner.data.sources.csv import MISSING
from runner.export.graph_ops import pixel_scaling, softmax
from runner.models import is_keras
from runner.models.loss_kinds import output_kind
from runner.spec.metadata import substitute_metadata

# Ops applied to a whole batch as they are applied to one element: elementwise or last-axis.
_BATCH_SAFE = {"cast", "scale", "normalize", "one_hot"}
# Ops an exported graph cannot hold: the message says why.
_NOT_EXPORTABLE = {
    "augment": "it is random (augmentation belongs to train); an exported model runs in inference mode",
    "decode_image": "images of any size cannot be stacked into one batch: decode and resize before serving",
}
_STRING_OPS = {"decode_raw": "it reads bytes, which LiteRT and ONNX Runtime do not take as model inputs"}


@dataclass
class RawInput:
    """One named input of the exported model."""

    name: str
    dtype: tf.DType
    shape: list                     # without the batch axis
    column: dict | None = None      # tabular: {"kind", "fill", "vocabulary", "mode", "integer"}
    key: str | None = None          # the feature's name when the source yields named features


@dataclass
class Serving:
    """The serving function and what it needs: `function(**inputs)` -> {name: tensor}."""

    inputs: list                    # [RawInput]
    function: object                # a tf.function over the named inputs
    holder: tf.Module               # tracks the model's variables for saving
    split: str                      # the split whose preprocessing runs inside


def build_serving(spec, run_dir, manifest: dict, model, fmt: str = "saved_model", jit_compile=False) -> Serving:
    """The serving function of the run in `run_dir` (its spec and learned statistics).

    Raises:
        SpecError: a map op that cannot run inside an exported graph, located at the op.
    """
    # A test split drawn as a fraction of train's source reads train's source (and stages)
    data = spec.sections.data
    split = "test" if data.test.source else "train"
    info = manifest.get("data_info") or {}
    source = load_source(spec, ("data", split, "source"), data.split(split).source, spec.sections.seed)
    learned = load_learned(run_dir)
    inputs = _raw_inputs(spec, split, source, learned)
    _check_ops(spec, split, fmt)
    # TensorFlow's graph runtime (no XLA) serves the plain SavedModel: its faster forms of the ops
    graph_runtime = fmt == "saved_model" and not jit_compile
    steps = _map_stages(spec, split, info, inputs, learned, getattr(source, "table", None), graph_runtime)
    # ONNX has no string equality (tf2onnx casts strings to numbers): text is looked up in
    # hash tables there, which it turns into CategoryMapper; the other formats compare.
    tables = _string_tables(inputs) if fmt == "onnx" else {}
    class_names = info.get("class_names")
    keras_model = is_keras(model)

    def serve(*values):
        features = _encode(inputs, values, getattr(source, "table", None), tables)
        for apply in steps:
            features = apply(features)
        outputs = model(features, training=False) if keras_model else model(features)
        names = _output_names(model, outputs)
        return _named_outputs(outputs, _kinds(spec, names), class_names, names, graph_runtime)

    signature = [tf.TensorSpec([None, *i.shape], i.dtype, name=i.name) for i in inputs]
    text = any(i.dtype == tf.string for i in inputs)
    function = tf.function(serve, input_signature=signature, autograph=False, jit_compile=jit_compile and not text)
    holder = tf.Module(name="serving")
    if keras_model:
        # Every variable the function may capture, tracked from the root: random layers' seed
        # generator states too (read even in inference mode), which Keras does not list as
        # weights. Not the Keras model itself: it would save its optimizer's state as well.
        holder.model_variables = [v.value for v in model.variables]
        # Lookup layers' tables (TextVectorization, StringLookup, IntegerLookup) are resources,
        # not variables: tracked too, or the function that reads them cannot be saved.
        holder.model_resources = lookup_resources(model)
    else:
        holder.model = model
    for i, (known, missing) in enumerate(tables.values()):  # attributes: where tf2onnx finds tables
        setattr(holder, f"vocabulary_{i}", known)
        setattr(holder, f"missing_{i}", missing)
    return Serving(inputs, function, holder, split)


def lookup_resources(model) -> list:
    """The TensorFlow resources (lookup tables) held by the model's layers, nested layers included."""
    found, seen = [], set()

    def visit(value, depth):
        if id(value) in seen or depth > 3:
            return
        seen.add(id(value))
        if isinstance(value, tf.saved_model.experimental.TrackableResource):
            found.append(value)
        elif _is_layer(value):
            for attribute in vars(value).values():
                visit(attribute, depth + 1)

    for layer in _all_layers(model):
        visit(layer, 0)
    return found


def _all_layers(model) -> list:
    flatten = getattr(model, "_flatten_layers", None)
    return list(flatten(include_self=True, recursive=True)) if flatten else [model]


def _is_layer(value) -> bool:
    import keras

    return isinstance(value, keras.layers.Layer)


def _raw_inputs(spec, split, source, learned) -> list:
    """The source's raw element as named inputs: one per tabular column, else one tensor."""
    inputs = _source_inputs(spec, split, source, learned)
    taken = set()
    for i in inputs:  # two columns that clean to the same name: the later one numbered
        name, n = i.name, 2
        while i.name in taken:
            i.name, n = f"{name}_{n}", n + 1
        taken.add(i.name)
    return inputs


def _source_inputs(spec, split, source, learned) -> list:
    table = getattr(source, "table", None)
    if table is not None:
        declared = ((spec.sections.data.split(split).source or {}).get("csv") or {}).get("missing_values")
        inputs = []
        for column in table.columns:
            known = dict(learned.columns.get(column.name) or {})
            known["integer"] = column.integer
            known["missing"] = [str(v) for v in (declared if declared is not None else MISSING)]
            text = column.kind == "categorical" and not column.integer
            inputs.append(RawInput(_input_name(column.name), tf.string if text else tf.float32, [], known))
        return inputs
    element = source.make().element_spec
    features = element[0] if isinstance(element, tuple) else element
    if isinstance(features, dict):
        return [RawInput(_input_name(k), v.dtype, v.shape.as_list(), key=k) for k, v in features.items()]
    kind = next(iter(spec.sections.data.split(split).source))
    name = "images" if kind in ("idx", "image_folder") else "features"
    return [RawInput(name, features.dtype, features.shape.as_list())]


def _input_name(name: str) -> str:
    """A signature input name from a column name: ASCII letters, digits and '_', anything else
    '_' (`größe` -> `gr__e`), prefixed `input_` unless it starts with a letter."""
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c == "_" else "_" for c in str(name))
    return cleaned if cleaned and cleaned[0].isalpha() else f"input_{cleaned}"


def _check_ops(spec, split, fmt) -> None:
    """A located error for a map op of `split` that an exported graph cannot hold."""
    for i, stage in enumerate(spec.sections.data.split(split).stages):
        if "map" not in stage:
            continue
        for j, op in enumerate(stage["map"].get("ops") or []):
            ((name, args),) = op.items()
            if (args or {}).get("on", "features") == "label" or (name == "augment" and split == "train"):
                continue  # train's augmentation is left out, as a validation fraction leaves it out
            why = _NOT_EXPORTABLE.get(name) or (_STRING_OPS.get(name) if fmt != "saved_model" else None)
            if why:
                raise spec.error(("data", split, "stages", i, "map", "ops", j),
                                 f"{name} cannot run inside an exported model: {why}")


def _map_stages(spec, split, info, inputs, learned, table, graph_runtime=False) -> list:
    """Batch -> batch functions: each map stage of `split` built as `pipe predict` builds it
    (`runner.commands.prediction.preprocessing_steps`): label ops skipped, the run's normalize statistics.

    `graph_runtime`: a stage that only scales uint8 pixels runs as one kernel
    (`runner.export.graph_ops.pixel_scaling`), with the same values."""
    signature = [tf.TensorSpec([None, *i.shape], i.dtype) for i in inputs]
    encoded = tf.function(lambda *v: _encode(inputs, v, table, {}), autograph=False)
    element = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape[1:], t.dtype),
                                    encoded.get_concrete_function(*signature).structured_outputs)
    learned.restart()
    functions = []
    for i, stage in enumerate(spec.sections.data.split(split).stages):
        ((name, args),) = stage.items()
        if name != "map":
            continue
        where = ("data", split, "stages", i, "map")
        ops = [op for op in args["ops"] if (next(iter(op.values())) or {}).get("on", "features") != "label"
               and not (split == "train" and "augment" in op)]
        ops = substitute_metadata(ops, info, spec, where + ("ops",))
        probe = tf.data.Dataset.from_tensors(tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), element))
        resolved = learn_normalize_ops(spec, where, probe, ops, learned, split)
        function = build_map_function(spec, where, resolved, element)
        fused = pixel_scaling(resolved, element, function) if graph_runtime else None
        functions.append(fused or _batched(function, all(next(iter(op)) in _BATCH_SAFE for op in ops)))
        element = probe.map(function).element_spec
    return functions


def _batched(function, batch_safe: bool):
    """An element function applied to a batch: directly when its ops are elementwise, else vectorized."""
    def apply(batch):
        if batch_safe:
            return function(batch)
        return tf.vectorized_map(function, batch, fallback_to_while_loop=False)

    return apply


def _encode(inputs, values, table, tables: dict):
    """Raw values -> the features the run's stages start from (tabular columns encoded as train taught)."""
    if table is None:
        if inputs[0].key is None:
            return values[0]
        return {i.key: v for i, v in zip(inputs, values)}
    encoded = {}
    for raw, value, column in zip(inputs, values, table.columns):
        encoded[column.name] = _encode_column(raw.column, value, tables.get(raw.name))
    groups = table.groups or {None: [c.name for c in table.columns]}
    by_name = {c.name: c for c in table.columns}
    features = {}
    for group, names in groups.items():
        whole = all(by_name[n].kind == "categorical" and by_name[n].mode == "int" for n in names)
        parts = [encoded[n] if whole else tf.cast(encoded[n], tf.float32) for n in names]
        features[group] = tf.concat(parts, axis=-1)
    return features[None] if None in features else features


def _string_tables(inputs) -> dict:
    """{input name: (vocabulary table, missing-token table)} for text columns: index 0 unknown."""
    tables = {}
    for i in inputs:
        if i.dtype != tf.string or i.column is None:
            continue
        vocabulary = [str(v) for v in i.column.get("vocabulary", [])]
        known = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabulary or [""], tf.string), tf.constant(list(range(1, len(vocabulary) + 1)) or [0],
                                                                   tf.int64)), default_value=0)
        tokens = i.column.get("missing") or [""]
        missing = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(tokens), tf.ones([len(tokens)], tf.int64)), default_value=0)
        tables[i.name] = (known, missing)
    return tables


def _encode_column(column: dict, value, tables=None):
    """One column of a batch: its gaps filled with train's value, categories looked up in train's vocabulary.

    The lookup is an equality against the vocabulary (index 0 out of vocabulary, as Keras's
    StringLookup/IntegerLookup number them), which LiteRT runs as builtin ops; ONNX looks text
    up in hash tables instead (`tables`).
    """
    if tables is not None:
        return _encode_text_by_tables(column, value, *tables)
    if value.dtype == tf.string:
        tokens = column.get("missing") or [""]
        missing = tf.reduce_any(tf.equal(value[:, tf.newaxis], tf.constant(tokens)), axis=-1)
    else:
        missing = tf.math.is_nan(value)
    categorical = column.get("kind") == "categorical"
    if "fill" in column and not (categorical and value.dtype == tf.string):
        value = tf.where(missing, tf.fill(tf.shape(value), tf.constant(column["fill"], value.dtype)), value)
    if not categorical:
        return tf.cast(value, tf.float32)[:, tf.newaxis]
    vocabulary = column["vocabulary"]
    if column.get("integer"):
        value = tf.cast(value, tf.int64)
        known = tf.constant([int(v) for v in vocabulary], tf.int64)
    else:
        known = tf.constant([str(v) for v in vocabulary])
    hits = tf.cast(tf.equal(value[:, tf.newaxis], known[tf.newaxis, :]), tf.float32)
    if "fill" in column and value.dtype == tf.string:  # text gaps: the fill's row, chosen among floats
        filled = tf.constant([[1.0 if str(v) == str(column["fill"]) else 0.0 for v in vocabulary]])
        hits = tf.where(missing[:, tf.newaxis], tf.tile(filled, [tf.shape(hits)[0], 1]), hits)
    unknown = 1.0 - tf.reduce_max(hits, axis=-1, keepdims=True) if len(vocabulary) else \
        tf.ones_like(hits[:, :1])
    one_hot = tf.concat([unknown, hits], axis=-1)
    if column.get("mode", "one_hot") == "int":
        return tf.argmax(one_hot, axis=-1)[:, tf.newaxis]
    return one_hot


def _encode_text_by_tables(column: dict, value, known, missing):
    vocabulary = [str(v) for v in column.get("vocabulary", [])]
    index = known.lookup(value)
    if "fill" in column:
        fill = vocabulary.index(str(column["fill"])) + 1 if str(column["fill"]) in vocabulary else 0
        index = tf.where(missing.lookup(value) > 0, tf.fill(tf.shape(index), tf.constant(fill, tf.int64)), index)
    if column.get("mode", "one_hot") == "int":
        return index[:, tf.newaxis]
    return tf.one_hot(index, len(vocabulary) + 1, dtype=tf.float32)


def _output_names(model, outputs) -> list | None:
    if isinstance(outputs, dict):
        return list(outputs)
    if isinstance(outputs, (list, tuple)):
        names = list(getattr(model, "output_names", None) or [])
        return names if len(names) == len(outputs) else [f"output_{i}" for i in range(len(outputs))]
    return None


def _kinds(spec, names) -> dict:
    """How to read each output: by its own loss when `train.loss` is per output, else the loss's."""
    loss = spec.sections.train.loss
    if names and isinstance(loss, dict) and set(loss) <= set(names):
        return {n: _kind_of(spec, loss[n]) if n in loss else {"kind": "regression"} for n in names}
    kind = output_kind(spec)
    return {n: kind for n in names or [None]}


def _kind_of(spec, config) -> dict:
    """`runner.models.loss_kinds.output_kind` for one output's loss identifier."""
    return output_kind(spec, loss=config)


def _named_outputs(outputs, kinds: dict, class_names, names, graph_runtime=False) -> dict:
    """{probabilities, class[, class_name]} for a classifier, {prediction} otherwise; prefixed per output."""
    if names is None:
        return _one_output(outputs, kinds[None], class_names, "", graph_runtime)
    values = outputs.values() if isinstance(outputs, dict) else outputs
    named = {}
    for name, value in zip(names, values):
        named.update(_one_output(value, kinds[name], None, f"{name}_", graph_runtime))
    return named


def _one_output(value, kind: dict, class_names, prefix: str, graph_runtime=False) -> dict:
    value = tf.cast(value, tf.float32)
    if kind["kind"] == "multiclass":
        probabilities = softmax(value, decomposed=graph_runtime) if kind["from_logits"] else value
        flat = value if value.shape.rank == 2 else tf.reshape(value, [tf.shape(value)[0], -1])
        classes = tf.argmax(flat, axis=-1)
        named = {f"{prefix}probabilities": probabilities, f"{prefix}class": classes}
    elif kind["kind"] == "binary":
        probabilities = tf.sigmoid(value) if kind["from_logits"] else value
        classes = tf.cast(tf.reshape(probabilities, [tf.shape(value)[0], -1])[:, 0] >= 0.5, tf.int64)
        named = {f"{prefix}probabilities": probabilities, f"{prefix}class": classes}
    else:
        return {f"{prefix}prediction": value}
    if class_names and (kind["kind"] == "multiclass" and len(class_names) == value.shape[-1]
                        or kind["kind"] == "binary" and len(class_names) == 2):
        named[f"{prefix}class_name"] = tf.gather(tf.constant([str(c) for c in class_names]), classes)
    return named


def representative_inputs(spec, count: int = 200, split: str = "train") -> list:
    """`count` raw examples of `split`'s source (the split whose raw inputs the serving function
    takes: `Serving.split`), evenly spaced over it, as [array per input]."""
    source = load_source(spec, ("data", split, "source"), spec.sections.data.split(split).source, spec.sections.seed)
    table = getattr(source, "table", None)
    total = source.count or count
    rows = np.unique(np.linspace(0, total - 1, min(count, total)).astype(np.int64))
    if table is not None:
        return [np.asarray(table.values[c.name][rows]).astype(np.float32 if table.values[c.name].dtype.kind == "f"
                                                             else object) for c in table.columns]
    element = next(iter(source.make().batch(total).take(1)))
    features = element[0] if isinstance(element, tuple) else element
    if isinstance(features, dict):
        return [np.asarray(v)[rows] for v in features.values()]
    return [np.asarray(features)[rows]]
