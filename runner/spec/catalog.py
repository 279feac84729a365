"""The static Keras catalog: every Keras name a spec can write, read without importing Keras.

`keras_catalog.json` beside this module is generated from Keras by
`scripts/make_keras_catalog.py` (CI regenerates it and fails on drift). It is read once,
lazily, the first time a spec names a Keras object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

CATALOG_NAME = "keras_catalog.json"

# What each kind is called in messages, as `pipe run` words them.
KIND_WORDS = {
    "layers": "layer", "activations": "activation", "losses": "loss", "optimizers": "optimizer",
    "schedules": "learning-rate schedule", "metrics": "metric", "callbacks": "callback",
    "initializers": "initializer", "regularizers": "regularizer", "constraints": "constraint",
    "applications": "keras.applications backbone",
}


@lru_cache(maxsize=1)
def load_catalog() -> dict:
    """The catalog as generated: {keras_version, kinds: {kind: {names, aliases}}}."""
    text = (resources.files("runner.spec") / CATALOG_NAME).read_text(encoding="utf-8")
    return json.loads(text)


def keras_version() -> str:
    """The Keras version the catalog was generated from."""
    return load_catalog()["keras_version"]


@dataclass(frozen=True)
class Entry:
    """One Keras class or function: its public name and the arguments it accepts."""

    kind: str
    name: str
    data: dict

    @property
    def arguments(self) -> dict:
        return {a["name"]: a for a in self.data["args"]}

    @property
    def required(self) -> list[str]:
        return [a["name"] for a in self.data["args"] if a["required"]]

    @property
    def is_function(self) -> bool:
        return self.data["kind"] == "function"


def lookup(kind: str, name) -> Entry | None:
    """The entry a name resolves to in Keras: a public name, or an alias `get` accepts."""
    if not isinstance(name, str):
        return None
    table = load_catalog()["kinds"][kind]
    canonical = name if name in table["names"] else table["aliases"].get(name)
    if canonical is None:
        return None
    return Entry(kind, canonical, table["names"][canonical])


def names(kind: str) -> list[str]:
    """Every name of a kind Keras resolves (public names, then aliases): did-you-mean candidates."""
    table = load_catalog()["kinds"][kind]
    usable = [n for n, e in table["names"].items() if not e.get("abstract")]
    return usable + [a for a, target in table["aliases"].items() if not table["names"][target].get("abstract")]
