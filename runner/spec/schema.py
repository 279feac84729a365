"""The spec's JSON Schema: loading it and turning its errors into located, plain-words ones."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

from runner.spec.errors import SpecError, did_you_mean, format_path

SCHEMA_NAME = "pipeline.schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The spec's JSON Schema: from the installed package, else from the source tree."""
    packaged = resources.files("runner") / "schemas" / SCHEMA_NAME
    if packaged.is_file():
        return json.loads(packaged.read_text(encoding="utf-8"))
    return json.loads((Path(__file__).resolve().parents[2] / "schemas" / SCHEMA_NAME).read_text(encoding="utf-8"))


def partial_schema(schema: dict) -> dict:
    """The schema of a part of a spec (a file with `extends`, or a base): every key optional.

    Its bases or the files layered over it may give what it leaves out, so an editor checks
    the names, types and values it writes, never what is missing; `pipe validate` checks
    the merged spec. `required` stays where it tells the forms of an anyOf/oneOf apart.
    """
    def strip(node, choice=False):
        if isinstance(node, list):
            return [strip(item) for item in node]
        if not isinstance(node, dict):
            return node
        return {key: [strip(item, True) for item in value] if key in ("anyOf", "oneOf") else strip(value)
                for key, value in node.items() if not (key == "required" and isinstance(value, list) and not choice)}

    partial = {key: value for key, value in strip(schema).items() if key not in ("if", "else")}
    partial["$id"] = schema["$id"].replace(":pipeline:", ":pipeline-partial:")
    partial["title"] = schema["title"] + ", a part (extends)"
    return partial


def deref(schema):
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if ref:
        return load_schema()["$defs"][ref.rsplit("/", 1)[1]]
    return schema


NO_DEFAULT = object()


def default_at(path: tuple):
    """The schema's `default` for the key at `path` (names and list indices), or
    `NO_DEFAULT`: what a spec that leaves the key out means."""
    node = load_schema()
    for key in path:
        node = deref(node)
        node = node.get("items") if isinstance(key, int) else (node.get("properties") or {}).get(key)
        if not isinstance(node, dict):
            return NO_DEFAULT
    return node.get("default", deref(node).get("default", NO_DEFAULT))  # a $ref's neighbour first


def schema_errors(spec) -> list[SpecError]:
    import jsonschema  # a third of validate's time; only needed here

    # YAML reads `32.0` as a float, which JSON Schema counts as an integer but Python, tf.data
    # and Keras do not (`range(32.0)` fails): an integer key takes whole numbers written as such.
    integers = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=integers)(load_schema())
    # NaN passes every JSON Schema bound, and so does an infinity under a minimum
    errors = [spec.error(path, message, at_value=True) for path, message in _non_finite(spec.doc, ())]
    for error in validator.iter_errors(spec.doc):
        errors += _explain(spec, error)
    return errors


def _non_finite(node, path: tuple):
    """(path, message) of every NaN, and of every infinity but a bound's, anywhere in the spec.

    An infinite size, rate, weight or data value runs into NaN (a learning rate of .inf
    diverges at the first step); only a bound may be infinite, meaning none.
    """
    if isinstance(node, float) and node != node:
        yield path, "not a number (.nan): no size, rate or weight is one"
    elif isinstance(node, float) and math.isinf(node) and not (path and _is_bound(path[-1])):
        yield path, f"infinite ({'-' if node < 0 else ''}.inf): no size, rate or weight is one (a bound such as clip's max may be)"
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, path + (i,))


def _is_bound(key) -> bool:
    """Whether a key names a bound, which .inf leaves out: `clip: {max: .inf}`, ReLU's
    `max_value`, a `clipvalue` (a clip at ±inf changes nothing), a timeout."""
    return isinstance(key, str) and (key in ("min", "max", "clipvalue", "timeout", "every_seconds")
                                     or key.startswith(("min_", "max_")) or key.endswith(("_min", "_max", "_timeout_s")))


def _missing(spec, path, key, message) -> SpecError:
    """At the `null` that removed `key` from a base (its mark stays), else at its mapping."""
    if path + (key,) not in spec.key_marks:
        return spec.error(path, message)
    error = spec.error(path + (key,), message, "a null removed it")
    error.path = path
    return error


def _exactly_one(spec, path, options, keys) -> SpecError:
    """"expected exactly one of"; when the keys came from different files (a merge kept a
    base's beside a later file's), where each came from and how to remove the base's."""
    origins = {k: spec.origin(path + (k,)) for k in keys}
    merged = len({str(o[0]) if o else "--set" for o in origins.values()}) > 1
    if not merged:
        got = ", ".join(f"'{k}'" for k in keys) or "none"
        return spec.error(path, f"expected exactly one of: {', '.join(options)}; got {got}")
    got = " and ".join(f"'{k}' ({f'{o[0]}:{o[1]}' if o else '--set'})" for k, o in origins.items())
    base = next((k for k, o in origins.items() if o), keys[0])
    remove = (f"--set {format_path(path + (base,))}=null" if None in origins.values()
              else f"'{base}: null' in the later file")
    return spec.error(path, f"expected exactly one of: {', '.join(options)}; got {got}",
                      f"the files merge key by key: {remove} removes the base's")


def _errors_of_the_alternative_it_is(error) -> list:
    """The errors of the one alternative whose kind the value is (its type, its constant), when
    exactly one is; else [] and the alternatives are listed."""
    by_option: dict = {}
    for sub in error.context or []:
        by_option.setdefault(sub.relative_schema_path[0], []).append(sub)
    kinds = ("type", "const", "enum", "required", "additionalProperties", "oneOf", "anyOf")
    same_kind = [subs for subs in by_option.values()
                 if not any(s.validator in kinds and not s.relative_path for s in subs)]
    return same_kind[0] if len(same_kind) == 1 and len(by_option) > 1 else []


def _explain(spec, error) -> list[SpecError]:
    """Turn one jsonschema error into our located, plain-words errors."""
    path = tuple(error.absolute_path)
    kind, schema, value = error.validator, error.schema, error.instance
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        unknown = [k for k in value if k not in allowed]
        return [spec.error(path + (k,), f"unknown key '{k}'", did_you_mean(k, allowed)) for k in unknown]
    if kind == "required":
        missing = error.validator_value
        allowed = list(schema.get("properties", {}))
        misspelled = {did_you_mean(k, allowed) for k in value if k not in allowed}
        # a key written with a typo is reported once, as unknown, not also as missing
        names = [k for k in missing if k not in value and f"did you mean '{k}'?" not in misspelled]
        what = "section" if not path else "key"
        return [_missing(spec, path, k, f"missing required {what} '{k}'") for k in names]
    if kind in ("maxProperties", "minProperties") and schema.get("maxProperties") == 1 and "properties" in schema:
        return [_exactly_one(spec, path, list(schema["properties"]), list(value))]
    if kind == "enum":
        options = error.validator_value
        listed = ", ".join(_show(o) for o in options)
        hint = did_you_mean(value, [o for o in options if isinstance(o, str)]) if isinstance(value, str) else None
        return [spec.error(path, f"{_show(value)} is not one of {listed}", hint, at_value=True)]
    if kind == "const":
        return [spec.error(path, f"expected {_show(error.validator_value)}, got {_show(value)}", at_value=True)]
    if kind == "type":
        return [spec.error(path, f"expected {_type_words(error.validator_value)}, got {_describe(value)}", at_value=True)]
    if kind == "oneOf" and all(set(s) == {"required"} and len(s["required"]) == 1 for s in error.validator_value):
        options = [s["required"][0] for s in error.validator_value]  # one of these keys, and others beside
        return [_exactly_one(spec, path, options, [k for k in value if k in options])]
    if kind in ("anyOf", "oneOf"):
        inside = _errors_of_the_alternative_it_is(error) if isinstance(value, (dict, list)) else []
        if inside:  # e.g. a mapping where a mapping or a name is allowed: what is wrong in the mapping
            return [e for sub in inside for e in _explain(spec, sub)]
        alternatives = " or ".join(_summary(deref(s)) for s in error.validator_value)
        return [spec.error(path, f"expected {alternatives}, got {_describe(value)}", at_value=True)]
    if kind == "pattern" and path == ("name",) and value in (".", ".."):
        return [spec.error(path, f"{_show(value)} names no folder of its own (runs would land outside "
                                 "outputs.dir): name the pipeline with letters, digits, '_', '.' or '-'", at_value=True)]
    if kind == "pattern" and path and path[-1] == "name":
        return [spec.error(path, f"{_show(value)} may only use ASCII letters (a-z, A-Z), digits, '_', '.' and '-'", at_value=True)]
    if kind == "maxItems":
        return [spec.error(path, f"a list of {len(value)} items is too long: at most {error.validator_value}")]
    if kind == "maxLength":
        return [spec.error(path, f"a string of {len(value)} characters is too long: at most "
                                 f"{error.validator_value}", at_value=True)]
    return [spec.error(path, error.message, at_value=True)]


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def _type_words(types) -> str:
    types = [types] if isinstance(types, str) else types
    return " or ".join(_TYPE_WORDS[t] for t in types)


def _summary(schema) -> str:
    if "const" in schema:
        return _show(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_show(o) for o in schema["enum"])
    words = _type_words(schema.get("type", "object"))
    if "minimum" in schema:
        words += f" >= {schema['minimum']}"
    if "maximum" in schema:
        words += f"{' and' if 'minimum' in schema else ''} <= {schema['maximum']}"
    return words


def _show(value) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)


def _describe(value) -> str:
    for python_type, word in ((bool, "true or false"), (dict, "a mapping"), (list, "a list"), (type(None), "null")):
        if isinstance(value, python_type):
            return word
    kind = {str: "string", int: "integer", float: "number"}[type(value)]
    return f"{kind} {value!r}"
