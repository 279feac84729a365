"""Outputs: the run directory and everything written into it.

Owns creating a run directory and writing files atomically (`files`), the manifest, the
per-epoch history and trajectories, the saved model, the plots and the predictions they
draw. May import `runner.spec`, `runner.data` and `runner.models` (for the predictions the
plots need); TensorFlow and matplotlib only where a file needs them.
"""
