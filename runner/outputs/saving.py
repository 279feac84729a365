"""The trained model, saved once: model.keras for Keras models, saved_model/ for tf.Modules
or on request (`outputs.save_model: saved_model`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import uuid
from pathlib import Path

from runner.errors import EXIT_INVALID, PipeError
from runner.outputs.files import write_failure


def save_model(model, run_dir: Path, element_spec=None, format="auto") -> Path:
    """Save the trained model once: model.keras (Keras) or saved_model/ (tf.Module, or asked for).

    A Keras model asked for as `saved_model` is exported as `Model.export` exports it (a
    serving SavedModel: `tf.saved_model.load(path).serve(x)`), except that `serve` runs the
    model in inference mode: `Model.export` calls the model without `training`, which
    keeps Keras's random augmentation layers (RandomFlip, RandomRotation, ...) active.

    A tf.Module gets a `serve` tf.function over the features' signature so the reloaded
    SavedModel predicts: `loaded = tf.saved_model.load(path)`, then `loaded(x)` or
    `loaded.serve(x)` (and `loaded.signatures["serving_default"](x=x)`).
    """
    import keras
    import tensorflow as tf

    run_dir = Path(run_dir)
    if isinstance(model, keras.Model) and format == "saved_model":
        target = run_dir / "saved_model"
        temp = run_dir / f".saved_model-{uuid.uuid4().hex}"
        with _written(target, temp):
            _export_for_inference(model, temp)
            os.replace(temp, target)
        return target
    if isinstance(model, keras.Model):
        target = run_dir / "model.keras"
        temp = run_dir / f".model-{uuid.uuid4().hex}.keras"
        with _written(target, temp):
            model.save(temp)
            os.replace(temp, target)
        return target
    target = run_dir / "saved_model"
    temp = run_dir / f".saved_model-{uuid.uuid4().hex}"
    features = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    signature = tf.nest.map_structure(
        lambda s: tf.TensorSpec([None, *s.shape[1:]], s.dtype, name="x"), features
    )
    model.serve = tf.function(lambda x: model(x), input_signature=[signature])
    # A tf.function saved as `__call__` makes the reloaded object callable: `loaded(x)`.
    model.__call__ = model.serve
    with _written(target, temp):
        tf.saved_model.save(model, str(temp), signatures={"serving_default": model.serve})
        os.replace(temp, target)
    return target


def _export_for_inference(model, path: Path) -> None:
    """`model.export(path)` with `serve` calling the model with `training=False`."""
    import keras

    from runner.internals import export_input_signature

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda *inputs: model(*inputs, training=False),
                         input_signature=export_input_signature(model))
    archive.write_out(str(path), verbose=False)


@contextlib.contextmanager
def _written(target: Path, temp: Path):
    """On any failure, no half-saved model is left; a write failure names `target` and why."""
    import tensorflow as tf

    try:
        yield
    except BaseException as e:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        if isinstance(e, (OSError, tf.errors.OpError)):
            raise write_failure(target, e) from e
        raise


def _check_model_file(run_dir: Path, model: Path) -> None:
    """The model must be the file the run saved (not a link), and when its manifest recorded its
    SHA-256, that file: a model file swapped or edited since is refused, never used silently."""
    from runner.outputs.manifest import fingerprint
    from runner.outputs.records import RunFileError, is_run_dir, read_run

    if model.is_symlink():  # even to the same bytes: the run's files are the run's own
        raise RunFileError(f"{model}: a symbolic link, not the file the run saved; not loaded")
    recorded = read_run(run_dir).manifest.get("model_sha256") if is_run_dir(run_dir) else None
    if isinstance(recorded, str) and recorded and fingerprint(model) != recorded:
        raise RunFileError(f"{model}: not the model the run saved (its SHA-256 differs from the manifest's "
                           "model_sha256); not loaded")


class NoSavedModel(PipeError, FileNotFoundError):
    """A run directory without a model to load (outputs.save_model: false, or a failed run)."""

    exit_code = EXIT_INVALID


def require_saved_model(record) -> None:
    """Before any data is read: a run that saved no model (killed, failed, or
    outputs.save_model: false) is said as such, not as a problem of its data.

    Raises:
        NoSavedModel: neither model.keras nor saved_model/ in the run directory.
    """
    if (record.path / "model.keras").is_file() or (record.path / "saved_model").is_dir():
        return
    why = ("the run saved no model (outputs.save_model: false)" if record.status == "completed"
           else f"the run is {record.status} and saved no model")
    raise NoSavedModel(f"{record.path}: {why} (model.keras or saved_model/)")


def load_model(run_dir: Path):
    """The model a run saved: a Keras model (model.keras) or the reloaded SavedModel.

    Raises:
        NoSavedModel: the run directory holds neither (outputs.save_model: false, or a failed run).
    """
    run_dir = Path(run_dir)
    for name in ("model.keras", "saved_model"):
        if (run_dir / name).exists():
            _check_model_file(run_dir, run_dir / name)
            break
    if (run_dir / "model.keras").is_file():
        import keras

        return keras.saving.load_model(run_dir / "model.keras")
    if (run_dir / "saved_model").is_dir():
        import tensorflow as tf

        loaded = tf.saved_model.load(str(run_dir / "saved_model"))
        if not callable(loaded) and hasattr(loaded, "serve"):  # a Keras model's export: its `serve`
            if _draws_random_numbers(loaded.serve):
                print(f"warning: {run_dir / 'saved_model'} draws random numbers when it serves (a Keras model "
                      "exported with its augmentation layers active, as pipe exported them before serving in "
                      "inference mode): its predictions vary from call to call; train it again to export it "
                      "for inference", file=sys.stderr, flush=True)
            return _serving_module(tf, loaded)
        return loaded
    raise NoSavedModel(f"{run_dir}: no saved model (model.keras or saved_model/) in this run directory")


def _draws_random_numbers(function) -> bool:
    """Whether a restored tf.function's graphs hold random ops (none serve in inference mode)."""
    return any("Random" in node.op for concrete in getattr(function, "concrete_functions", [])
               for node in graph_nodes(concrete))


def graph_nodes(concrete) -> list:
    """Every op node of a concrete function's graph, those of the functions it calls included."""
    graph = concrete.graph.as_graph_def()
    return [*graph.node, *(n for f in graph.library.function for n in f.node_def)]


def _serving_module(tf, loaded):
    """A Keras model exported as a SavedModel, callable as `model(x)` like a saved tf.Module."""

    class Serving(tf.Module):
        def __init__(self):
            super().__init__(name="serving")
            self.loaded = loaded  # keeps the restored variables alive

        def __call__(self, x):
            return self.loaded.serve(x)

    return Serving()
