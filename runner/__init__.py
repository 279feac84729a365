"""pipe: a declarative pipeline runner for TensorFlow."""

__version__ = "0.1.0"
