"""The trained model, saved once: model.keras for Keras models, saved_model/ for tf.Modules
or on request (`outputs.save_model: saved_model`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def save_model(model, run_dir: Path, element_spec=None, format="auto") -> Path:
    """Save the trained model once: model.keras (Keras) or saved_model/ (tf.Module, or asked for).

    A Keras model asked for as `saved_model` is exported with `Model.export` (a serving
    SavedModel: `tf.saved_model.load(path).serve(x)`).

    A tf.Module gets a `serve` tf.function over the features' signature so the reloaded
    SavedModel predicts (`tf.saved_model.load(path).serve(x)`).
    """
    import keras
    import tensorflow as tf

    run_dir = Path(run_dir)
    if isinstance(model, keras.Model) and format == "saved_model":
        target = run_dir / "saved_model"
        temp = run_dir / f".saved_model-{uuid.uuid4().hex}"
        model.export(str(temp), format="tf_saved_model", verbose=False)
        os.replace(temp, target)
        return target
    if isinstance(model, keras.Model):
        target = run_dir / "model.keras"
        temp = run_dir / f".model-{uuid.uuid4().hex}.keras"
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
    tf.saved_model.save(model, str(temp), signatures={"serving_default": model.serve})
    os.replace(temp, target)
    return target
