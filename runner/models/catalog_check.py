"""Whether the installed Keras is the one `pipe validate`'s static catalog was made from."""

from __future__ import annotations

import sys
from functools import lru_cache

import keras

from runner.spec.catalog import keras_version


@lru_cache(maxsize=1)
def warn_on_catalog_drift() -> str | None:
    """Say once per process when the catalog's Keras differs from the installed one.

    `pipe validate` checks names against the catalog; a run always trusts Keras itself, so
    a different Keras is a notice, not an error. Returns the notice (None when they agree).
    """
    made_from, installed = keras_version(), keras.__version__
    if made_from == installed:
        return None
    notice = (f"note: pipe validate checks Keras names against a catalog made from Keras {made_from}; "
              f"Keras {installed} is installed, and this run trusts it (regenerate the catalog with "
              "scripts/make_keras_catalog.py)")
    print(notice, file=sys.stderr, flush=True)
    return notice
