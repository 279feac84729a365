"""`pipe predict`: a run's saved model on a raw input file, with the spec's preprocessing.

The input is read as the data sources read their files (NPY, NPZ, CSV, IDX, an image or a
folder of images), features only; the test split's declared preprocessing (its `map` ops
on the features) runs first, then the model, in batches; the output is CSV, NPY or JSON
Lines by its extension, with the class and probabilities for classifiers.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runner.data.learned import learn_normalize_ops, load_learned
from runner.data.ops import build_map_function
from runner.data.sources import load_source
from runner.data.sources.image_folder import image_problem
from runner.models import is_keras
from runner.models.identifiers import get_loss, keras_message
from runner.outputs.files import write_bytes, write_text
from runner.outputs.records import load_run_spec, read_run
from runner.outputs.run_dir import run_file_problem
from runner.outputs.saving import load_model
from runner.spec import Spec, SpecError
from runner.spec.metadata import substitute_metadata

OUTPUT_FORMATS = (".csv", ".npy", ".jsonl")
_IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_DEFAULT_BATCH = 256
_PROGRESS_FROM = 20  # batches: smaller inputs finish before a bar would help


@dataclass
class Predictions:
    """What `predict_file` wrote."""

    path: Path
    count: int
    classes: np.ndarray | None  # predicted class per row, for classifiers


def predict_file(run_dir, input_path, output_path, batch_size=None, key=None) -> Predictions:
    """Predict every row of `input_path` with the model saved in `run_dir`; write `output_path`.

    Raises:
        SpecError: an unreadable input or an output of unknown format, located at the file.
        FileNotFoundError: not a run directory, or no saved model in it.
    """
    run_dir, input_path, output_path = Path(run_dir), Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_FORMATS:
        raise _input_spec(output_path).error(
            (), f"unknown output format '{output_path.suffix}' (use {', '.join(OUTPUT_FORMATS)})")
    refused = run_file_problem(output_path)
    if refused:
        raise _input_spec(output_path).error((), refused)
    record = read_run(run_dir)
    spec = load_run_spec(run_dir)
    features = read_features(spec, input_path, key)
    dataset = tf.data.Dataset.from_tensor_slices(features)
    split = "test" if spec.get("data", "test") else "train"
    with _input_misfit(input_path, features):
        for step in preprocessing_steps(spec, run_dir, split, record.manifest.get("data_info") or {}):
            dataset = step(dataset)
    batch = batch_size or _declared_batch_size(spec, split) or _DEFAULT_BATCH
    batch = max(1, min(batch, len(features)))  # tf.data reserves a batch's rows before it has them
    model = load_model(run_dir)
    with _input_misfit(input_path, features, model):
        outputs = _run_model(model, dataset.batch(batch).prefetch(tf.data.AUTOTUNE), len(features), batch)
    kind = output_kind(spec)
    _write(output_path, outputs, kind)
    classes = _classes(outputs, kind)
    return Predictions(output_path, len(outputs), classes)


@contextlib.contextmanager
def _input_misfit(input_path: Path, features, model=None):
    """Rows the preprocessing or the model cannot take (wrong shape, text for numbers) as
    one located line naming the input file, not Keras's or TensorFlow's raw text."""
    try:
        yield
    except (ValueError, TypeError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        rows = getattr(features, "shape", (0,))[1:]
        kind = "text" if getattr(features, "dtype", np.dtype(float)).kind in "USO" else str(features.dtype)
        expected = getattr(model, "input_shape", None) if model is not None and is_keras(model) else None
        wants = f"; the model takes rows of shape {tuple(expected)[1:]}" if isinstance(expected, tuple) else ""
        reason = keras_message(e)
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise _input_spec(input_path).error(
            (), f"the input's rows ({kind}, shape {tuple(rows)}) do not fit the run's "
                f"{'model' if model is not None else 'preprocessing'}{wants}: {reason}") from None


def read_features(spec, input_path: Path, key=None) -> np.ndarray:
    """The input file's rows as features, read by the source of its kind (labels ignored)."""
    if input_path.is_dir() or input_path.suffix.lower() in _IMAGES:
        return _read_images(spec, input_path)
    config = _source_config(spec, input_path, key)
    try:
        source = load_source(_input_spec(input_path), ("input",), config)
    except SpecError as e:  # located at the file given, not at a spec key it never had
        raise SpecError(e.message, file=input_path, hint=e.hint) from None
    element = next(iter(source.make().batch(source.count or 1)), None)
    if element is None:
        raise _input_spec(input_path).error((), "the input holds no rows")
    features = element[0] if isinstance(element, tuple) else element
    return features.numpy()


def _source_config(spec, input_path: Path, key) -> dict:
    """The source declaration that reads `input_path`: by its kind, options from the spec's source."""
    name = input_path.name.lower()
    declared = _declared_source(spec)
    if name.endswith(".npy"):
        return {"npy": {"features": str(input_path)}}
    if name.endswith(".npz"):
        features = key or declared.get("npz", {}).get("features") or _only_array(input_path)
        if features is None:
            raise _input_spec(input_path).error((), "the archive holds several arrays: name one with --key")
        return {"npz": {"path": str(input_path), "features": features}}
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        options = {k: v for k, v in declared.get("csv", {}).items() if k not in ("path", "label")}
        return {"csv": {**options, "path": str(input_path), "label": None}}
    if "idx" in name or name.endswith(("-ubyte", "-ubyte.gz")):
        return {"idx": {"images": str(input_path)}}
    raise _input_spec(input_path).error(
        (), "unknown input kind: give a .npy, .npz, .csv(.gz), IDX (*-ubyte[.gz]) file, an image or a folder of images")


def _declared_source(spec) -> dict:
    """The test split's source declaration (else train's), for format options such as a CSV's shape."""
    for split in ("test", "train"):
        source = spec.get("data", split, "source")
        if source:
            return source
    return {}


def _only_array(path: Path) -> str | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
    except (OSError, ValueError) as e:
        raise _input_spec(path).error((), f"cannot read NPZ archive: {e}") from e
    return keys[0] if len(keys) == 1 else None


def _read_images(spec, path: Path) -> np.ndarray:
    """An image file or every image under a folder (sorted by path), decoded as uint8 arrays."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGES)
    if not files:
        raise _input_spec(path).error((), f"no images ({', '.join(_IMAGES)}) in {path}")
    images = []
    for file in files:
        problem = image_problem(file)  # before TensorFlow allocates what its header declares
        if problem:
            raise _input_spec(file).error((), problem)
        try:
            image = tf.io.decode_image(file.read_bytes(), expand_animations=False).numpy()
        except tf.errors.OpError as e:
            raise _input_spec(file).error((), f"cannot decode image: {e.message}") from e
        images.append(image)
    shapes = {i.shape for i in images}
    if len(shapes) > 1:
        raise _input_spec(path).error((), f"images of different sizes {sorted(shapes)}: resize them first")
    stacked = np.stack(images)
    return stacked[..., 0] if stacked.shape[-1] == 1 and _rank_without_channels(spec) else stacked


def _rank_without_channels(spec) -> bool:
    """Whether the model reads images as (height, width): grey images lose their channel axis."""
    shape = spec.get("model", "sequential", "input_shape")
    return shape is not None and len(shape) == 2


def preprocessing_steps(spec, run_dir, split: str, info: dict) -> list:
    """Dataset -> dataset steps applied to raw features before the model, in order.

    The split's declared `map` stages, their ops on the features (ops on the label are
    skipped: a raw input has none), with the `normalize` statistics the run learned from
    train (its preprocessing.json), never statistics of the input itself.
    """
    learned = load_learned(run_dir)
    learned.restart()
    steps = []
    for i, stage in enumerate(spec.get("data", split, "stages", default=[])):
        ((name, args),) = stage.items()
        if name != "map":
            continue  # batching, shuffling, caching: how the run fed data, not what it is
        where = ("data", split, "stages", i, "map")
        ops = [op for op in args["ops"] if (next(iter(op.values())) or {}).get("on", "features") != "label"]
        ops = substitute_metadata(ops, info, spec, where + ("ops",))
        steps.append(_map_step(spec, where, ops, learned, split))
    return steps


def _map_step(spec, where, ops, learned, split):
    def step(dataset):
        resolved = learn_normalize_ops(spec, where, dataset, ops, learned, split)
        return dataset.map(build_map_function(spec, where, resolved, dataset.element_spec),
                           num_parallel_calls=tf.data.AUTOTUNE)
    return step


def _declared_batch_size(spec, split: str) -> int | None:
    """The split's own batch size, so predictions are computed as its evaluation computed them."""
    for stage in spec.get("data", split, "stages", default=[]):
        size = (stage.get("batch") or {}).get("batch_size") if "batch" in stage else None
        if isinstance(size, int):
            return size
    return None


def _run_model(model, batches, count: int, batch: int) -> np.ndarray:
    """The model's outputs for every batch, as one float32 array; a progress bar on a terminal."""
    steps = -(-count // batch)
    bar = keras.utils.Progbar(steps, unit_name="batch") if sys.stdout.isatty() and steps >= _PROGRESS_FROM else None
    outputs = []
    for step, x in enumerate(batches, start=1):
        y = model(x, training=False) if is_keras(model) else model(x)
        outputs.append(np.asarray(tf.cast(y, tf.float32)))
        if bar is not None:
            bar.update(step)
    return np.concatenate(outputs)


def output_kind(spec) -> dict:
    """How to read the model's outputs: `{"kind": "multiclass"|"binary"|"regression", "from_logits": bool}`.

    Decided by the loss the run trained with, as Keras's own losses name it.
    """
    loss = get_loss(spec.doc["train"]["loss"], spec)
    name = (getattr(loss, "name", None) or type(loss).__name__).lower()
    from_logits = getattr(loss, "from_logits", None)
    if from_logits is None:
        from_logits = bool(getattr(loss, "_fn_kwargs", {}).get("from_logits", False))
    if "categorical" in name:
        return {"kind": "multiclass", "from_logits": from_logits}
    if "binary" in name:
        return {"kind": "binary", "from_logits": from_logits}
    return {"kind": "regression", "from_logits": False}


def _probabilities(outputs: np.ndarray, kind: dict) -> np.ndarray:
    if kind["kind"] == "multiclass":
        return tf.nn.softmax(outputs, axis=-1).numpy() if kind["from_logits"] else outputs
    return tf.sigmoid(outputs).numpy() if kind["from_logits"] else outputs


def _classes(outputs: np.ndarray, kind: dict):
    if kind["kind"] == "multiclass":
        return outputs.reshape(len(outputs), -1).argmax(-1)
    if kind["kind"] == "binary":
        return (_probabilities(outputs, kind).reshape(len(outputs), -1)[:, 0] >= 0.5).astype(np.int64)
    return None


def _write(path: Path, outputs: np.ndarray, kind: dict) -> None:
    """CSV, NPY or JSON Lines: class and probabilities for classifiers, the outputs otherwise."""
    classes = _classes(outputs, kind)
    values = _probabilities(outputs, kind) if classes is not None else outputs
    rows = values.reshape(len(values), -1)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, values)
        write_bytes(path, buffer.getvalue())
    elif suffix == ".csv":
        names = [f"probability_{i}" for i in range(rows.shape[1])] if classes is not None else \
            (["prediction"] if rows.shape[1] == 1 else [f"prediction_{i}" for i in range(rows.shape[1])])
        lines = [",".join((["class"] if classes is not None else []) + names)]
        for i, row in enumerate(rows):
            cells = [repr(float(v)) for v in row]
            lines.append(",".join(([str(int(classes[i]))] if classes is not None else []) + cells))
        write_text(path, "\n".join(lines) + "\n")
    else:
        lines = []
        for i, row in enumerate(rows):
            item = ({"class": int(classes[i]), "probabilities": [float(v) for v in row]}
                    if classes is not None else {"prediction": [float(v) for v in row]})
            lines.append(json.dumps(item))
        write_text(path, "\n".join(lines) + "\n")


def _input_spec(path: Path) -> Spec:
    """A stand-in spec for a file given on the command line, so read errors name that file."""
    return Spec(Path(path), {}, root=Path.cwd())
