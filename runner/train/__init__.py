"""Training: devices and strategies, the `fit` and custom loops, checkpoints and resume.

Owns `setup_devices` (placement, precision; the tf.distribute strategy in `strategies`), Keras `fit`, the GradientTape
loop, the loss check before training and the epoch checkpoints a resume starts from. May
import TensorFlow, Keras, `runner.spec` and `runner.models`; never data or outputs.
"""
