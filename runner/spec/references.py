"""`${path}` references between values of a spec, resolved once its files are merged.

`epochs: ${train.base_epochs}` takes the value at that path, keeping its type (a number
stays a number, a mapping a mapping) when the whole value is one reference; inside a longer
string the value is written into the text (`name: "cnn-${train.epochs}"`). A reference to a
path the spec does not have, or a cycle of references, is an error at the value that holds
it. Nothing else is looked up: no environment variables, no resolvers that run code.

The limits of one file hold after resolution too: copies a reference makes count toward
the same 100,000 values and 64 levels of nesting, a chain of references is at most 64 long,
and interpolation writes at most 1 MB of text; each is an error at the reference that
crosses it, found while resolving, so a reference bomb stops early.

The dataset metadata references (`${data.num_classes}`, `${data.<split>.num_examples}`,
runner/spec/metadata.py) are another family, known only once the data is read: they are
left as written here, for the rules and the run to handle.
"""

from __future__ import annotations

import copy
import re

from runner.spec.errors import did_you_mean, format_path
from runner.spec.metadata import KNOWN_REFERENCES
from runner.spec.yamlfile import MAX_BYTES, MAX_DEPTH, MAX_NODES

_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_VALID = re.compile(r"[^.\[\]\s]+(?:\.[^.\[\]\s]+|\[-?\d+\])*")
_PART = re.compile(r"\[(-?\d+)\]|([^.\[\]]+)")
_NESTING = 300  # containers entered at once while resolving, across a chain of references


def resolve_references(spec) -> None:
    """Replace every `${path}` in `spec.doc` by the value it names, in place.

    Raises:
        SpecError: a reference to a missing path, inside a string to a mapping or list, a
            cycle of references; located at the value holding the reference.
    """
    resolver = _Resolver(spec)
    resolver.count = _size(spec.doc, MAX_NODES + 1)
    resolver.everything(spec.doc, ())


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
        self.count = 0  # values in the document, copies made by references included
        self.text = 0  # characters interpolation has written
        self.nesting = 0  # containers being walked at once (bounds the Python stack)

    def everything(self, node, path):
        if not isinstance(node, (dict, list)):
            return
        self.nesting += 1
        try:
            if self.nesting > _NESTING:
                raise self.spec.error(path, f"references nest deeper than {MAX_DEPTH} levels", at_value=True)
            for key in list(node) if isinstance(node, dict) else range(len(node)):
                self.everything(self.value(node, key, path + (key,)), path + (key,))
        finally:
            self.nesting -= 1

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
        if len(self.active) >= MAX_DEPTH:
            raise self.spec.error(path, f"a chain of more than {MAX_DEPTH} references (each names the next)",
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
        start = _REFERENCE.sub("", text).find("${")
        if start >= 0:
            unclosed = _REFERENCE.sub("", text)[start:start + 40]
            raise self.spec.error(path, f"'{unclosed}' is not closed: a reference is written ${{path}}, with its "
                                        f"closing brace", at_value=True)
        whole = _REFERENCE.fullmatch(text)
        if whole:
            if _is_metadata(whole.group(1)):
                return text
            found = self.lookup(whole.group(1), text, path)
            if not found:
                return text
            self._fits(found[0], path)
            return copy.deepcopy(found[0])
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
            self.text += len(pieces[-1])
            if self.text > MAX_BYTES:
                raise self.spec.error(path, f"references write more than {MAX_BYTES // 1_000_000} MB of text "
                                            f"(a reference bomb?)", at_value=True)
        return "".join(pieces + [text[end:]])

    def _fits(self, value, path):
        """Count a copy of `value` at `path` toward the value and nesting limits."""
        if not isinstance(value, (dict, list)):
            return
        self.count += _size(value, MAX_NODES + 2 - self.count) - 1  # the reference itself was one
        if self.count > MAX_NODES:
            raise self.spec.error(path, f"references expand the spec to more than {MAX_NODES} values "
                                        f"(a reference bomb?)", at_value=True)
        if len(path) + _depth(value, MAX_DEPTH + 1) > MAX_DEPTH:
            raise self.spec.error(path, f"the copy makes nesting deeper than {MAX_DEPTH} levels", at_value=True)

    def lookup(self, inner, text, path):
        """(value,) at the path `inner` names, resolved; None to leave a `${data...}` for later."""
        parts = parse_path(inner)
        if parts is None:
            raise self.spec.error(path, f"${{{inner}}} is not a path to a value (write ${{section.key}} or "
                                        f"${{section.list[0].key}})", at_value=True)
        node, where = self.spec.doc, ()
        for part in parts:
            if isinstance(part, str) and re.fullmatch(r"-?\d+", part) and (
                    isinstance(node, list) or (isinstance(node, dict) and part not in node)):
                part = int(part)  # `layers.0` as `--set` writes it, for `layers[0]`
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
        return (node,)

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
    if not where and isinstance(part, str) and (part.isupper() or ":" in part):  # ${HOME}, ${env:HOME}
        return "a reference names a value of the spec; environment variables are not read"
    if not isinstance(node, dict):
        return None
    hint = did_you_mean(part, [str(k) for k in node])
    if hint is None:
        return None
    return hint.replace("'", "'" + format_path(where) + "." if where else "'", 1)


def _size(node, limit: int) -> int:
    """How many values `node` holds (itself included), counting no further than `limit`."""
    count, stack = 0, [node]
    while stack and count < limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _depth(node, limit: int) -> int:
    """Levels of nesting below `node` (0 for a single value), looking no deeper than `limit`."""
    deepest, stack = 0, [(node, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level < limit and isinstance(item, (dict, list)):
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
