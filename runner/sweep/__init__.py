"""`pipe sweep`: a study of trials on Optuna, run by worker processes, and its report."""
