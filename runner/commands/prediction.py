"""`pipe predict`: a run's saved model on a raw input file, with the spec's preprocessing.

The input is read as the data sources read their files (NPY, NPZ, CSV, IDX, an image or a
folder of images), features only; the test split's declared preprocessing (its `map` ops
on the features) runs first, then the model, in batches; the output is CSV, NPY or JSON
Lines by its extension, with the class and probabilities for classifiers.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runner.data.learned import learn_normalize_ops, load_learned
from runner.data.ops import build_map_function
from runner.data.sources import load_source
from runner.data.stages import AUGMENTATION_OPS
from runner.data.table import encode_tables
from runner.data.windows import window_stage
from runner.errors import EXIT_USAGE
from runner.models import is_keras
from runner.models.identifiers import keras_message
from runner.models.loss_kinds import output_kind
from runner.outputs.prediction_files import OUTPUT_FORMATS, classes, write_predictions
from runner.outputs.records import load_run_spec, read_run
from runner.outputs.run_dir import run_file_problem
from runner.outputs.saving import require_saved_model
from runner.commands.predict_fit import columns_problem, first_line as _first_line, shape_problem
from runner.commands.predict_images import IMAGES, image_decoder, read_images
from runner.commands.predict_text import read_texts
from runner.run.build import restored_model
from runner.spec import Spec, SpecError
from runner.spec.errors import without_values
from runner.spec.metadata import substitute_metadata

_DEFAULT_BATCH = 256
_PROGRESS_FROM = 20  # batches: smaller inputs finish before a bar would help


@dataclass
class Predictions:
    """What `predict_file` wrote."""

    path: Path
    count: int
    classes: np.ndarray | None  # predicted class per row, for a classifier with one output
    notes: list = field(default_factory=list)  # what the user should know, said once


@dataclass
class Inputs:
    """The input file's rows as the model's features, before the spec's preprocessing."""

    features: object  # an array, or {input name: array} for a model with named inputs
    files: list | None = None  # each row's file, for images read from a folder
    notes: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(tf.nest.flatten(self.features)[0])


def predict_file(run_dir, input_path, output_path, batch_size=None, key=None) -> Predictions:
    """Predict every row of `input_path` with the model saved in `run_dir`; write `output_path`.

    Raises:
        SpecError: an unreadable input or an output of unknown format, located at the file.
        FileNotFoundError: not a run directory, or no saved model in it.
    """
    run_dir, input_path, output_path = Path(run_dir), Path(input_path), Path(output_path)
    if output_path.suffix.lower() not in OUTPUT_FORMATS:
        raise Spec.for_input(output_path).error(
            (), f"unknown output format '{output_path.suffix}' (use {', '.join(OUTPUT_FORMATS)})")
    refused = run_file_problem(output_path)
    if refused:
        raise Spec.for_input(output_path).error((), refused)
    record = read_run(run_dir)
    require_saved_model(record)
    spec = load_run_spec(run_dir)
    info = record.manifest.get("data_info") or {}
    inputs = read_inputs(spec, run_dir, input_path, key)
    dataset = tf.data.Dataset.from_tensor_slices(inputs.features)
    split = "test" if spec.get("data", "test", "source") else "train"  # a test fraction has train's stages
    with _input_misfit(input_path, inputs.features):
        for step in preprocessing_steps(spec, run_dir, split, info, input_path=input_path):
            dataset = step(dataset)
    batch = batch_size or _declared_batch_size(spec, split) or _DEFAULT_BATCH
    batch = max(1, min(batch, inputs.count))  # tf.data reserves a batch's rows before it has them
    model = restored_model(run_dir, spec)  # the model step of the run's build, as the run saved it
    with _input_misfit(input_path, inputs.features, model):
        outputs = _run_model(model, dataset.batch(batch).prefetch(tf.data.AUTOTUNE), inputs.count, batch)
    misfit = shape_problem(dataset.element_spec, model)  # rows a model pooling over any size took
    if misfit:
        raise Spec.for_input(input_path).error((), misfit)
    kinds = {name: output_kind(spec, name) for name in outputs}
    try:
        write_predictions(output_path, outputs, kinds, class_names=info.get("class_names"), files=inputs.files)
    except ValueError as e:
        raise Spec.for_input(output_path).error((), str(e)) from None
    except OSError as e:  # a folder the user cannot write to: theirs to fix, as pipe export says it
        raise Spec.for_input(output_path).error((), f"cannot write there: {e.strerror or e}") from None
    single = next(iter(outputs)) if len(outputs) == 1 else None
    predicted = classes(outputs[single], kinds[single]) if len(outputs) == 1 else None
    for name, values in outputs.items():
        unknown = classes(values, kinds[name])
        if unknown is not None and (unknown < 0).any():
            inputs.notes.append(f"{int((unknown < 0).sum())} rows have outputs that are not numbers (NaN or "
                                f"infinite){'' if name is None else f' in output {name}'}: no class is "
                                "predicted for them (the class cells are empty)")
    written = len(next(iter(outputs.values())))  # windows of a series: fewer than its rows
    return Predictions(output_path, written, predicted, inputs.notes)


@contextlib.contextmanager
def _input_misfit(input_path: Path, features, model=None):
    """Rows the preprocessing or the model cannot take (wrong shape, text for numbers) as
    one located line naming the input file, not Keras's or TensorFlow's raw text."""
    try:
        yield
    except (ValueError, TypeError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        rows = getattr(features, "shape", (0,))[1:]
        dtype = getattr(features, "dtype", None)  # None: named inputs (a dict of arrays)
        kind = "named inputs" if dtype is None else "text" if dtype.kind in "USO" else str(dtype)
        expected = getattr(model, "input_shape", None) if model is not None and is_keras(model) else None
        wants = f"; the model takes rows of shape {tuple(expected)[1:]}" if isinstance(expected, tuple) else ""
        reason = without_values(keras_message(e))  # never the rows' values
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise Spec.for_input(input_path).error(
            (), f"the input's rows ({kind}, shape {tuple(rows)}) do not fit the run's "
                f"{'model' if model is not None else 'preprocessing'}{wants}: {reason}") from None


def read_inputs(spec, run_dir, input_path: Path, key=None) -> Inputs:
    """The input file's rows as features, read by the source of its kind (labels ignored).

    An NPZ archive gives the arrays the run's source named (one per named input); a CSV is
    read with the options of the run's CSV source (a tabular one encoded with what train
    taught the run), its label column dropped when the file still holds it; images are
    decoded with the run's `image_folder` options; a run reading text takes .txt files or a
    CSV text column (runner.commands.predict_text).
    """
    texts, files = read_texts(spec, input_path)
    if texts is not None:
        return Inputs(texts, files=files)
    decoder = image_decoder(spec)
    if input_path.is_dir() or input_path.suffix.lower() in IMAGES:
        images, names = read_images(spec, input_path, _declared_source(spec, "image_folder").get("image_folder"),
                                    encoded=decoder is not None)
        return Inputs(images, files=names)
    if decoder is not None:  # its first op wants a file's bytes, not pixels
        raise Spec.for_input(input_path).error((), f"the run's {decoder} decodes encoded images: give image files "
                                                f"({', '.join(IMAGES)}) or a folder of them")
    notes = []
    config = _source_config(spec, input_path, key, notes)
    misfit = "csv" in config and columns_problem(spec, _declared_source(spec, "csv").get("csv"), input_path)
    if misfit:
        raise Spec.for_input(input_path).error((), misfit)
    try:
        source = load_source(Spec.for_input(input_path), ("input",), config)
        if source.table is not None:  # tabular: encoded with the vocabularies and fills the run learned
            source = encode_tables(Spec.for_input(input_path), {"input": source}, load_learned(run_dir))["input"]
    except SpecError as e:  # located at the file given, not at a spec key it never had; the run's spec is done
        raise SpecError(e.message, file=input_path, hint=e.file_hint or e.hint) from None
    element = next(iter(source.make().batch(source.count or 1)), None)
    if element is None:
        raise Spec.for_input(input_path).error((), "the input holds no rows")
    features = element[0] if isinstance(element, tuple) else element
    return Inputs(tf.nest.map_structure(lambda t: t.numpy(), features), notes=notes)


def _source_config(spec, input_path: Path, key, notes: list) -> dict:
    """The source declaration that reads `input_path`: by its kind, options from the spec's source."""
    name = input_path.name.lower()
    kind = "npz" if name.endswith(".npz") else "csv" if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")) else None
    declared = _declared_source(spec, kind)
    if name.endswith(".npy"):
        return {"npy": {"features": str(input_path)}}
    if name.endswith(".npz"):
        wanted = declared.get("npz", {}).get("features")
        if key and isinstance(wanted, list):
            raise _usage(input_path, f"the model reads {len(wanted)} named inputs ({', '.join(wanted)}): "
                                     "leave out --key, the archive's arrays of those names are read")
        return {"npz": {"path": str(input_path), "features": key or _npz_features(declared, input_path)}}
    if name.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        options = {k: v for k, v in declared.get("csv", {}).items() if k not in ("path", "label")}
        label = _label_in_input(spec, declared.get("csv") or {}, input_path)
        if label is not None:
            shown = ", ".join(map(repr, label)) if isinstance(label, list) else repr(label)
            notes.append(f"{input_path}: the label column {shown} is ignored")
        # A table that names its features never reads the label column; a plain one drops it.
        return {"csv": {**options, "path": str(input_path),
                        "label": None if "features" in options else label}}
    if "idx" in name or name.endswith(("-ubyte", "-ubyte.gz")):
        return {"idx": {"images": str(input_path)}}
    raise _usage(input_path, "unknown input kind: give a .npy, .npz, .csv(.gz), IDX (*-ubyte[.gz]) file, an image "
                             "or a folder of images")


def _npz_features(declared: dict, input_path: Path):
    """The arrays the run's NPZ source read as features (a list: one per named input), when
    the archive holds them; else its only array."""
    wanted = declared.get("npz", {}).get("features")
    keys = _archive_keys(input_path)
    if isinstance(wanted, list) and set(wanted) <= set(keys):
        return wanted
    if isinstance(wanted, str) and wanted in keys:
        return wanted
    if isinstance(wanted, list):
        missing = [k for k in wanted if k not in keys]
        raise Spec.for_input(input_path).error((), f"the model reads the arrays {', '.join(wanted)}; the archive has "
                                                f"no {', '.join(missing)} (arrays: {', '.join(keys)})")
    if len(keys) != 1:
        raise _usage(input_path, "the archive holds several arrays: name one with --key")
    return keys[0]


def _label_in_input(spec, options: dict, input_path: Path):
    """The run's label column(s) when the input CSV still holds them, else None.

    By name in the input's header; by index when the input has as many columns as the
    run's own file (features and label).
    """
    label = options.get("label", -1)
    if label is None:
        return None
    header = _first_line(input_path)
    if header is None:
        return None
    cells = [c.strip().strip('"') for c in header.split(options.get("delimiter", ","))]
    labels = label if isinstance(label, list) else [label]
    if all(isinstance(v, str) for v in labels):
        return label if options.get("header") and set(labels) <= set(cells) else None
    try:
        trained = _first_line(spec.resolve_path(options["path"]))
    except (KeyError, OSError, TypeError):
        return None
    if trained is None or len(trained.split(options.get("delimiter", ","))) != len(cells):
        return None
    return label


def _declared_source(spec, kind: str | None = None) -> dict:
    """The source declaration whose format options (a CSV's shape, label, columns) read an
    input of `kind` ("csv", "npz"): the test split's, else train's, else validation's source of
    that kind; without one of that kind, the test split's (else train's)."""
    splits = ("test", "train", "validation")
    sources = [spec.get("data", split, "source") for split in splits]
    return (next((s for s in sources if isinstance(s, dict) and kind in s), None)
            or next((s for s in sources[:2] if s), {}))


def _archive_keys(path: Path) -> list:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.keys())
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise Spec.for_input(path).error((), f"cannot read NPZ archive: {e}") from e


def preprocessing_steps(spec, run_dir, split: str, info: dict, input_path: Path | None = None) -> list:
    """Dataset -> dataset steps applied to raw features before the model, in order.

    The split's declared `map` stages, their ops on the features (ops on the label are
    skipped: a raw input has none; so is `augment`, which only trains), with the
    `normalize` statistics the run learned from train (its preprocessing.json), never
    statistics of the input itself. A series shorter than one `window` is an error located
    at `input_path` (at the stage when None).
    """
    learned = load_learned(run_dir)
    learned.restart()
    steps = []
    for i, stage in enumerate(spec.get("data", split, "stages", default=[])):
        ((name, args),) = stage.items()
        if name == "window":  # the input is a series: one prediction per window, the last one's included
            steps.append(functools.partial(window_stage, spec, ("data", split, "stages", i, "window"),
                                           args={**args, "targets": "none"}, count=0, info=info,
                                           too_short=None if input_path is None else functools.partial(
                                               _shorter_than_a_window, input_path)))
            continue
        if name != "map":
            continue  # batching, shuffling, caching: how the run fed data, not what it is
        where = ("data", split, "stages", i, "map")
        ops = [op for op in args["ops"] if (next(iter(op.values())) or {}).get("on", "features") != "label"
               and next(iter(op)) not in AUGMENTATION_OPS]  # random: training only
        ops = substitute_metadata(ops, info, spec, where + ("ops",))
        steps.append(_map_step(spec, where, ops, learned, split))
    return steps


def _shorter_than_a_window(input_path: Path, span: int, steps: int) -> SpecError:
    return Spec.for_input(input_path).error(
        (), f"the input has {steps} time steps, but the run's window needs at least {span}: "
            f"give a series of at least {span} steps")


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


def _run_model(model, batches, count: int, batch: int) -> dict:
    """The model's outputs for every batch as float32 arrays: {None: array} for one output,
    {output name: array} for several (a SavedModel's by the names the spec gave them); a
    progress bar on a terminal."""
    steps = -(-count // batch)
    bar = keras.utils.Progbar(steps, unit_name="batch") if sys.stdout.isatty() and steps >= _PROGRESS_FROM else None
    names = list(getattr(model, "output_names", None) or [])
    outputs: dict = {}
    for step, x in enumerate(batches, start=1):
        y = model(x, training=False) if is_keras(model) else model(x)
        for name, value in _by_output(y, names).items():
            outputs.setdefault(name, []).append(np.asarray(tf.cast(value, tf.float32)))
        if bar is not None:
            bar.update(step)
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def _by_output(y, names) -> dict:
    if isinstance(y, dict):
        return dict(y) if len(y) > 1 else {None: next(iter(y.values()))}
    if isinstance(y, (list, tuple)):
        if len(y) == 1:
            return {None: y[0]}
        return {(names[i] if i < len(names) else f"output_{i}"): v for i, v in enumerate(y)}
    return {None: y}


def _usage(path: Path, message: str) -> SpecError:
    """A mistake of the command line about the input file (a --key missing or too many, a kind
    predict does not read): exit 2, as every usage mistake; what the file holds stays exit 1."""
    error = Spec.for_input(path).error((), message)
    error.exit_code = EXIT_USAGE
    return error
