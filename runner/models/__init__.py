"""Models: Keras Sequential and functional graphs, tf.Module models, and Keras names.

Owns turning `model:` into a Keras model or a tf.Module (`build`, `modules`) and resolving
every Keras identifier a spec writes — layers, losses, optimizers, schedules, metrics,
callbacks — through Keras's own `get`/`deserialize` (`identifiers`). May import TensorFlow,
Keras and `runner.spec`; never data, training or outputs.
"""

from runner.models.build import build_model, is_keras

__all__ = ["build_model", "is_keras"]
