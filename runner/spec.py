"""Load a spec: read the YAML safely, apply `--set` overrides, check it against the schema.

Nothing here imports TensorFlow: `pipe validate` must stay fast enough for pre-commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from runner import yamlfile
from runner.errors import SpecError, did_you_mean, format_path

SCHEMA_NAME = "pipeline.schema.json"


class SpecErrors(SpecError):
    """Every mistake found in one spec, sorted by line; printed one per line."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        Exception.__init__(self, "\n".join(map(str, errors)))

    def __str__(self) -> str:
        return "\n".join(map(str, self.errors))


@dataclass
class Spec:
    """A loaded, schema-valid spec and where each of its values came from."""

    file: Path
    data: dict
    key_marks: dict = field(default_factory=dict)
    value_marks: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # path -> the `--set` text that wrote it

    def error(self, path, message: str, hint: str | None = None, *, at_value: bool = False) -> SpecError:
        """A SpecError located at `path` (its key, or its value with `at_value`)."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.overrides:
                return SpecError(message, file=f"--set {self.overrides[prefix]}", path=path, hint=hint)
            marks = (self.value_marks, self.key_marks) if at_value else (self.key_marks, self.value_marks)
            for table in marks:
                if prefix in table:
                    line, column = table[prefix]
                    return SpecError(message, file=self.file, line=line, column=column, path=path, hint=hint)
        return SpecError(message, file=self.file, path=path, hint=hint)

    def resolve_path(self, value: str) -> Path:
        """A path written in the spec: `~` expanded, relative to the spec file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.file.resolve().parent / path

    def get(self, *path, default=None):
        """The value at `path` in the spec, or `default` when any part is absent."""
        node = self.data
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                return default
        return default if node is None else node


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The spec's JSON Schema: from the installed package, else from the source tree."""
    packaged = resources.files("runner") / "schemas" / SCHEMA_NAME
    if packaged.is_file():
        return json.loads(packaged.read_text(encoding="utf-8"))
    return json.loads((Path(__file__).resolve().parents[1] / "schemas" / SCHEMA_NAME).read_text(encoding="utf-8"))


def load_spec(path, overrides=()) -> Spec:
    """Read, override and validate the spec at `path`.

    Raises:
        SpecErrors: every mistake found, each located in the file (or in its `--set`).
    """
    path = Path(path)
    try:
        doc = yamlfile.parse(yamlfile.read_text(path), file=path)
    except SpecError as e:
        raise SpecErrors([e]) from None
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else "a single value"
        raise SpecErrors([SpecError(f"the top level must be a mapping of sections, not {kind}", file=path, line=1, column=1)])
    spec = Spec(path, doc.data, doc.key_marks, doc.value_marks)
    for text in overrides:
        _apply_override(spec, text)
    errors = _schema_errors(spec)
    if not errors:
        from runner.rules import rule_errors  # cross-field rules assume a schema-valid spec

        errors = rule_errors(spec)
    if errors:
        raise SpecErrors(sorted(_unique(errors), key=lambda e: (e.line or 0, e.column or 0, str(e))))
    return spec


def _unique(errors):
    seen = {}
    for e in errors:
        seen.setdefault(str(e), e)
    return list(seen.values())


# ---------------------------------------------------------------------------- overrides


def _apply_override(spec: Spec, text: str) -> None:
    """Apply one `key.path=value` override; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecErrors([SpecError("expected KEY.PATH=VALUE", file=f"--set {text}")])
    try:
        value = yamlfile.parse(raw, file=f"--set {text}").data if raw.strip() else None
    except SpecError as e:
        raise SpecErrors([SpecError(e.message, file=f"--set {text}")]) from None
    parts = [int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split(".")]
    node, schema = spec.data, load_schema()
    for depth, part in enumerate(parts):
        where = tuple(parts[:depth])
        schema = _child_schema(schema, part, where, text)
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise SpecErrors([SpecError(f"{format_path(where)} has {len(node)} items; no index {part}", file=f"--set {text}")])
        elif isinstance(node, dict):
            if isinstance(part, int) and part not in node:
                raise SpecErrors([SpecError(f"{format_path(where) or 'the spec'} is a mapping, not a list", file=f"--set {text}")])
        else:
            raise SpecErrors([SpecError(f"{format_path(where)} is a single value; it has no '{part}'", file=f"--set {text}")])
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    spec.overrides[tuple(parts)] = text


def _child_schema(schema, key, where, text):
    """The schema of `key` inside `schema`, or an error when the schema forbids that key."""
    if schema is None:
        return None
    schema = _deref(schema)
    if isinstance(key, int):
        return schema.get("items")
    branches = schema.get("anyOf", [schema])
    known = []
    for branch in map(_deref, branches):
        props = branch.get("properties", {})
        if key in props:
            return props[key]
        extra = branch.get("additionalProperties")
        if isinstance(extra, dict):
            return extra
        types = branch.get("type", [])
        if extra is None and "object" in ([types] if isinstance(types, str) else types):
            return None  # a free-form mapping, such as a layer's arguments: Keras checks it
        known += list(props)
    if not known:
        return None
    hint = did_you_mean(key, known)
    raise SpecErrors([SpecError(f"unknown key '{key}' in {format_path(where) or 'the spec'}", file=f"--set {text}", hint=hint)])


def _deref(schema):
    ref = schema.get("$ref") if isinstance(schema, dict) else None
    if ref:
        return load_schema()["$defs"][ref.rsplit("/", 1)[1]]
    return schema


# ---------------------------------------------------------------------------- schema check


def _schema_errors(spec: Spec) -> list[SpecError]:
    import jsonschema  # a third of validate's time; only needed here

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = []
    for error in validator.iter_errors(spec.data):
        errors += _explain(spec, error)
    return errors


def _explain(spec: Spec, error) -> list[SpecError]:
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
        return [spec.error(path, f"missing required {what} '{k}'") for k in names]
    if kind in ("maxProperties", "minProperties") and schema.get("maxProperties") == 1 and "properties" in schema:
        options = ", ".join(schema["properties"])
        got = ", ".join(f"'{k}'" for k in value) or "none"
        return [spec.error(path, f"expected exactly one of: {options}; got {got}")]
    if kind == "enum":
        options = error.validator_value
        listed = ", ".join(_show(o) for o in options)
        hint = did_you_mean(value, [o for o in options if isinstance(o, str)]) if isinstance(value, str) else None
        return [spec.error(path, f"{_show(value)} is not one of {listed}", hint, at_value=True)]
    if kind == "const":
        return [spec.error(path, f"expected {_show(error.validator_value)}, got {_show(value)}", at_value=True)]
    if kind == "type":
        return [spec.error(path, f"expected {_type_words(error.validator_value)}, got {_describe(value)}", at_value=True)]
    if kind in ("anyOf", "oneOf"):
        alternatives = " or ".join(_summary(_deref(s)) for s in error.validator_value)
        return [spec.error(path, f"expected {alternatives}, got {_describe(value)}", at_value=True)]
    if kind == "pattern" and path and path[-1] == "name":
        return [spec.error(path, f"{_show(value)} may only use letters, digits, '_', '.' and '-'", at_value=True)]
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
    return words


def _show(value) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)


def _describe(value) -> str:
    for python_type, word in ((bool, "true or false"), (dict, "a mapping"), (list, "a list"), (type(None), "null")):
        if isinstance(value, python_type):
            return word
    kind = {str: "string", int: "integer", float: "number"}[type(value)]
    return f"{kind} {value!r}"
