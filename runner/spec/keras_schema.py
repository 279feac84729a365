"""`pipe schema --keras`: the spec's JSON Schema with the Keras catalog folded in.

Editors (yaml-language-server) then complete layer, loss, optimizer, metric and callback
names and their arguments, and flag an unknown one as you type. `pipe validate` keeps using
the plain schema plus the catalog checks, which also follow nested identifiers.
"""

from __future__ import annotations

import copy

from runner.spec import catalog
from runner.spec.catalog import KIND_WORDS
from runner.spec.keras_names import nested_kind
from runner.spec.schema import load_schema

# Where each kind of identifier sits in the schema, as JSON pointers to the node to replace.
_SITES = {
    "layers": (("properties", "model", "properties", "sequential", "properties", "layers", "items"),
               ("properties", "model", "properties", "functional", "properties", "layers", "items",
                "properties", "layer")),
    "losses": (("properties", "train", "properties", "loss"),),
    "optimizers": (("properties", "train", "properties", "optimizer"),),
    "metrics": (("properties", "train", "properties", "metrics"),),  # lists of them
    "callbacks": (("properties", "train", "properties", "callbacks"),),
}

# A number may also be a `${data...}` reference, hence "string".
_JSON_TYPES = {"bool": ["boolean", "null"], "int": ["number", "string", "null"],
               "float": ["number", "string", "null"], "str": ["string", "null"]}


def keras_schema() -> dict:
    """The spec schema whose Keras identifiers list the catalog's names and arguments."""
    schema = copy.deepcopy(load_schema())
    schema["description"] = (schema.get("description", "") +
                             f" Keras names and arguments from Keras {catalog.keras_version()}.").strip()
    for kind, sites in _SITES.items():
        schema["$defs"][f"keras_{kind}"] = _identifier_schema(kind)
        for site in sites:
            _replace(schema, site, kind)
    return schema


def _replace(schema, site, kind) -> None:
    *parents, last = site
    node = schema
    for key in parents:
        node = node[key]
    description = node[last].get("description", f"A Keras {KIND_WORDS[kind]}.")
    reference = {"$ref": f"#/$defs/keras_{kind}"}
    if kind in ("metrics", "callbacks"):
        node[last] = {"type": "array", "items": reference, "description": description}
    else:
        node[last] = {**reference, "description": description}


def _identifier_schema(kind: str) -> dict:
    """A name (one of the catalog's), {Name: {arguments}} or {class_name, config}."""
    table = catalog.load_catalog()["kinds"][kind]
    word = KIND_WORDS[kind]
    names = catalog.names(kind)
    short_forms = {name: _arguments_schema(kind, name, entry) for name, entry in table["names"].items()
                   if not entry.get("abstract")}
    alternatives = []
    if kind == "losses":
        alternatives.append({"type": "object", "minProperties": 2, "additionalProperties": {"$ref": "#/$defs/keras_losses"},
                             "description": "A loss per output of a functional model, by output name."})
    return {
        "description": f"A Keras {word}: its name, {{Name: {{arguments}}}} or {{class_name: Name, config: {{...}}}}.",
        "anyOf": alternatives + [
            {"type": "string", "enum": names, "description": f"A Keras {word} by name."},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
             "properties": short_forms, "description": f"A Keras {word} with its arguments."},
            {"type": "object", "required": ["class_name"], "additionalProperties": False,
             "properties": {
                 "class_name": {"type": "string", "enum": names, "description": f"The Keras {word} class."},
                 "config": {"type": "object", "description": "Its constructor arguments."},
                 "module": {"type": "string", "description": "Keras's module of the class (optional)."},
                 "registered_name": {"type": "string", "description": "Keras's registered name (optional)."},
             },
             "description": f"A Keras {word} in Keras's own serialized form."},
        ],
    }


def _arguments_schema(kind: str, name: str, entry: dict) -> dict:
    properties = {}
    for argument in entry["args"]:
        if argument["required"]:
            text = f"{argument['name']} (required)"
        else:
            text = f"{argument['name']} (default {argument.get('default')!r})"
        properties[argument["name"]] = {"description": text}
        if argument.get("layer") in ("one", "one_or_list"):  # a layer spec (Bidirectional's layer, ...)
            properties[argument["name"]]["anyOf"] = [{"$ref": "#/$defs/keras_layers"}, {"type": "array"}]
        elif argument.get("layer") == "list":
            properties[argument["name"]].update(type="array", items={"$ref": "#/$defs/keras_layers"})
        elif argument.get("type") in _JSON_TYPES and nested_kind(kind, argument["name"]) is None:
            properties[argument["name"]]["type"] = _JSON_TYPES[argument["type"]]
    if "adapt" in entry:  # pipe's option: runner.spec.adaptation
        properties["adapt"] = {"description": "pipe: adapt on the train split (default, unless its state is given), "
                                              "false, or {examples: N}"}
    schema = {"type": ["object", "null"], "properties": properties, "description": f"keras {name}"}
    if not entry.get("open"):
        schema["additionalProperties"] = False
    return schema
