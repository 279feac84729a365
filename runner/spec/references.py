"""`${path}` references between values of a spec, resolved once its files are merged.

`epochs: ${train.base_epochs}` takes the value at that path, keeping its type (a number
stays a number, a mapping a mapping) when the whole value is one reference; inside a longer
string the value is written into the text (`name: "cnn-${train.epochs}"`). A reference to a
path the spec does not have, or a cycle of references, is an error at the value that holds
it. Nothing else is looked up: no environment variables, no resolvers that run code.

The dataset metadata references (`${data.num_classes}`, `${data.<split>.num_examples}`,
runner/spec/metadata.py) are another family, known only once the data is read: they are
left as written here, for the rules and the run to handle.
"""

from __future__ import annotations

import copy
import re

from runner.spec.errors import did_you_mean, format_path
from runner.spec.metadata import KNOWN_REFERENCES

_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_VALID = re.compile(r"[^.\[\]\s]+(?:\.[^.\[\]\s]+|\[-?\d+\])*")
_PART = re.compile(r"\[(-?\d+)\]|([^.\[\]]+)")


def resolve_references(spec) -> None:
    """Replace every `${path}` in `spec.doc` by the value it names, in place.

    Raises:
        SpecError: a reference to a missing path, inside a string to a mapping or list, a
            cycle of references; located at the value holding the reference.
    """
    _Resolver(spec).everything(spec.doc, ())


def parse_path(text: str):
    """`model.layers[0].Dense` -> ("model", "layers", 0, "Dense"), or None if malformed."""
    text = text.strip()
    if not _VALID.fullmatch(text):
        return None
    return tuple(int(index) if index else key for index, key in _PART.findall(text))


def _is_metadata(text: str) -> bool:
    return f"${{{text.strip()}}}" in KNOWN_REFERENCES


class _Resolver:
    def __init__(self, spec):
        self.spec = spec
        self.active = []  # paths whose references are being resolved, in order
        self.done = set()

    def everything(self, node, path):
        if isinstance(node, dict):
            for key in list(node):
                self.everything(self.value(node, key, path + (key,)), path + (key,))
        elif isinstance(node, list):
            for i in range(len(node)):
                self.everything(self.value(node, i, path + (i,)), path + (i,))

    def value(self, container, key, path):
        """`container[key]` with its own references resolved (stored back)."""
        value = container[key]
        if not isinstance(value, str) or "${" not in value or path in self.done:
            return value
        if path in self.active:
            cycle = self.active[self.active.index(path):] + [path]
            first = self.active[self.active.index(path)]
            raise self.spec.error(first, "a cycle of references: " + " -> ".join(map(format_path, cycle)),
                                  at_value=True)
        self.active.append(path)
        try:
            value = self.substitute(value, path)
        finally:
            self.active.pop()
        container[key] = value
        self.done.add(path)
        return value

    def substitute(self, text, path):
        whole = _REFERENCE.fullmatch(text)
        if whole:
            if _is_metadata(whole.group(1)):
                return text
            found = self.lookup(whole.group(1), text, path)
            return found[0] if found else text
        pieces, end = [], 0
        for match in _REFERENCE.finditer(text):
            pieces.append(text[end:match.start()])
            end = match.end()
            found = None if _is_metadata(match.group(1)) else self.lookup(match.group(1), text, path)
            if found is None:
                pieces.append(match.group())
                continue
            value = found[0]
            if isinstance(value, (dict, list)):
                kind = "a mapping" if isinstance(value, dict) else "a list"
                raise self.spec.error(path, f"{match.group()} is {kind}; only a whole value can be a reference "
                                            f"to {kind}, not part of {text!r}", at_value=True)
            pieces.append(_text(value))
        return "".join(pieces + [text[end:]])

    def lookup(self, inner, text, path):
        """(value,) at the path `inner` names, resolved; None to leave a `${data...}` for later."""
        parts = parse_path(inner)
        if parts is None:
            raise self.spec.error(path, f"${{{inner}}} is not a path to a value (write ${{section.key}} or "
                                        f"${{section.list[0].key}})", at_value=True)
        node, where = self.spec.doc, ()
        for part in parts:
            if isinstance(node, dict) and part in node:
                node = self.value(node, part, where + (part,))
            elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
                node = self.value(node, part, where + (part,))
            else:
                if parts[0] == "data" and not isinstance(node, list):
                    return None  # maybe a misspelt dataset reference: its own rule says so
                raise self.spec.error(path, self._missing(inner, node, where, part), at_value=True,
                                      hint=_near(node, where, part))
            where += (part,)
        self.everything(node, where)
        return (copy.deepcopy(node),)

    @staticmethod
    def _missing(inner, node, where, part) -> str:
        if isinstance(node, list):
            items = f"{len(node)} item{'' if len(node) == 1 else 's'}"
            return f"${{{inner}}}: {format_path(where)} has {items}; no index {part}"
        if isinstance(node, dict):
            return f"${{{inner}}}: the spec has no {format_path(where + (part,))}"
        return f"${{{inner}}}: {format_path(where)} is a single value; it has no '{part}'"


def _near(node, where, part):
    """`did you mean 'train.epochs'?` over the keys beside the missing one."""
    if not where and isinstance(part, str) and part.isupper():
        return "a reference names a value of the spec; environment variables are not read"
    if not isinstance(node, dict):
        return None
    hint = did_you_mean(part, [str(k) for k in node])
    if hint is None:
        return None
    return hint.replace("'", "'" + format_path(where) + "." if where else "'", 1)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
