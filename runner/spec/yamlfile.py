"""Read a YAML file safely into plain Python values, remembering where each value stood.

PyYAML's composer gives nodes with marks; we construct the values ourselves so that we can
record the line and column of every key and value, refuse duplicate keys and non-standard
tags (a `!!python/...` tag is an error, never executed), read numbers the way YAML 1.2 does
(`1e-3` is 0.001, `on` is a string), and bound what an alias bomb or deep nesting can cost.
"""

from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass, field

import yaml

try:
    from yaml.cyaml import CParser as _CParser  # libyaml, when PyYAML was built with it
except ImportError:  # pragma: no cover
    _CParser = None

from runner.spec.errors import SpecError

MAX_BYTES = 1_000_000  # a spec is a page or two; anything this big is a mistake
MAX_NODES = 100_000  # values after expanding aliases
MAX_DEPTH = 64

_STANDARD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_STANDARD + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "merge")}


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.2 core-schema scalars: floats with or without a dot, booleans only true/false,
    dates left as strings."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag.rsplit(":", 1)[1] in ("null", "merge")]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
# YAML 1.2 core-schema integers (plus `_` separators): `010` is ten, never octal eight;
# `0o17` and `0x1F` are the only other bases; `1:30` is a string, not sexagesimal 90.
_INT = re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$")
_Resolver.add_implicit_resolver(_STANDARD + "int", _INT, list("-+0123456789"))
_Resolver.add_implicit_resolver(
    _STANDARD + "bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    _STANDARD + "float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# Characters a spec never needs and that hide or reorder text: C0/C1 controls but tab and
# line breaks, DEL, and the bidirectional overrides of "Trojan Source".
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _construct_int(loader, node) -> int:
    text = node.value.replace("_", "")
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


class _Composer(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
                yaml.constructor.SafeConstructor, _Resolver):
    def __init__(self, text: str):
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)


_Composer.add_constructor(_STANDARD + "int", _construct_int)


if _CParser is not None:
    class _FastComposer(_CParser, yaml.constructor.SafeConstructor, _Resolver):
        """libyaml's parser with the same resolver and constructors: a few times faster.

        Only a document it reads without complaint is taken from it; any error is
        reported by the pure-Python composer, whose messages and marks are pipe's.
        """

        def __init__(self, text: str):
            _CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            _Resolver.__init__(self)

    _FastComposer.add_constructor(_STANDARD + "int", _construct_int)
else:  # pragma: no cover - PyYAML built without libyaml
    _FastComposer = None


def _fast_node(text: str):
    """(loader, root node) from libyaml, or None when it is missing or finds anything amiss."""
    if _FastComposer is None:
        return None
    try:
        loader = _FastComposer(text)
    except Exception:
        return None
    try:
        return loader, loader.get_single_node()
    except Exception:  # a syntax error, several documents, nesting too deep: said below
        return None
    finally:
        loader.dispose()


@dataclass
class Document:
    """A YAML document as plain values, with the (line, column) of each key and value."""

    data: object
    key_marks: dict = field(default_factory=dict)  # path -> (line, col) of the key naming it
    value_marks: dict = field(default_factory=dict)  # path -> (line, col) of the value
    count: int = 0  # values built, aliases and merges expanded (toward MAX_NODES)


def read_text(path) -> str:
    """Read a spec file as UTF-8 text, refusing what cannot be a spec."""
    if Path(path).exists() and not Path(path).is_file() and not Path(path).is_dir():
        # a FIFO or a device would block or never end: a spec is a regular file
        raise SpecError("is not a regular file (a pipe or a device); a spec is a small YAML file", file=path)
    try:
        raw = open(path, "rb").read(MAX_BYTES + 1)
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file", file=path) from None
    if len(raw) > MAX_BYTES:
        raise SpecError(f"file is larger than {MAX_BYTES // 1_000_000} MB; a spec is a small YAML file", file=path)
    if b"\0" in raw:
        line, col = _position(raw, raw.index(b"\0"))
        raise SpecError("NUL byte in file; a spec is a text file", file=path, line=line, column=col)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, col = _position(raw, e.start)
        raise SpecError(f"not UTF-8 text (byte 0x{raw[e.start]:02x})", file=path, line=line, column=col) from None


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    before = raw[:offset]
    return before.count(b"\n") + 1, offset - (before.rfind(b"\n") + 1) + 1


def parse(text: str, file=None) -> Document:
    """Parse one YAML document from `text`; `file` names it in errors."""
    control = _CONTROL.search(text)
    if control:
        before = text[:control.start()]
        where = "in a --set value" if str(file).startswith("--set ") else "in file"
        raise SpecError(f"control character U+{ord(control.group()):04X} {where}; a spec is plain text",
                        file=file, line=before.count("\n") + 1, column=control.start() - (before.rfind("\n") + 1) + 1)
    fast = _fast_node(text)
    if fast is not None:
        return _built(*fast, file)
    try:
        loader = _Composer(text)
    except yaml.reader.ReaderError as e:  # characters YAML does not allow (U+FFFE, ...)
        before = text[:e.position]
        raise SpecError(f"character U+{e.character:04X} is not allowed in YAML", file=file,
                        line=before.count("\n") + 1, column=e.position - (before.rfind("\n") + 1) + 1) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        raise SpecError(f"YAML syntax error: {problem}", file=file, line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None, hint=_reference_hint(text, mark)) from None
    except yaml.YAMLError as e:
        raise SpecError(f"YAML error: {e}", file=file) from None
    except RecursionError:
        raise SpecError(f"YAML nesting is deeper than {MAX_DEPTH} levels", file=file, line=1, column=1) from None
    finally:
        loader.dispose()
    return _built(loader, node, file)


def _reference_hint(text: str, mark) -> str | None:
    """A `${path}` where the error is, unquoted inside `[ ]` or `{ }`: YAML reads its `{`."""
    if mark is None or text[mark.index:mark.index + 1] != "{" or text[mark.index - 1:mark.index] != "$":
        return None
    return 'quote a ${...} reference inside [ ] or { }: "${train.epochs}"'


def _built(loader, node, file) -> Document:
    if node is None:
        raise SpecError("file is empty; a spec is a YAML mapping", file=file, line=1, column=1)
    doc = Document(None)
    builder = _Builder(loader, doc, file)
    doc.data = builder.build(node, (), 0)
    doc.count = builder.count
    return doc


class _Builder:
    """Turns composed nodes into plain values, recording marks and enforcing limits."""

    def __init__(self, loader, doc: Document, file):
        self.loader, self.doc, self.file, self.count = loader, doc, file, 0
        self.open = set()  # ids of the nodes being built: an alias back to one is a cycle

    def error(self, node, message) -> SpecError:
        return SpecError(message, file=self.file, line=node.start_mark.line + 1, column=node.start_mark.column + 1)

    def counted(self, node):
        """One more value built or merged; bounded so aliases and merges cannot explode."""
        self.count += 1
        if self.count > MAX_NODES:
            raise self.error(node, f"document expands to more than {MAX_NODES} values (aliases used as a bomb?)")

    def build(self, node, path, depth):
        self.counted(node)
        if id(node) in self.open:
            raise self.error(node, "recursive alias: a value contains itself")
        if depth > MAX_DEPTH:
            raise self.error(node, f"YAML nesting is deeper than {MAX_DEPTH} levels")
        if node.tag not in _ALLOWED_TAGS:
            raise self.error(node, f"tag '{node.tag.replace(_STANDARD, '!!')}' is not allowed; a spec holds plain data only")
        self.doc.value_marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            self.open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path, depth)
                return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.constructor.ConstructorError, ValueError) as e:
            raise self.error(node, f"bad value: {getattr(e, 'problem', None) or e}") from None
        if isinstance(value, str) and _CONTROL.search(value):
            found = _CONTROL.search(value).group()
            raise self.error(node, f"control character U+{ord(found):04X} in a value; a spec is plain text")
        return value

    def _mapping(self, node, path, depth):
        result, seen = {}, {}
        for key_node, value_node in self._merged_pairs(node):
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, "a mapping key must be a plain scalar")
            if key_node.tag not in _ALLOWED_TAGS:
                raise self.error(key_node, f"tag '{key_node.tag.replace(_STANDARD, '!!')}' is not allowed")
            key = self.loader.construct_object(key_node)
            if isinstance(key, bool) or key is None:
                raise self.error(key_node, f"mapping key {key_node.value!r} must be a name or a number")
            if key in seen:
                raise self.error(key_node, f"duplicate key '{key}' (first defined on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
            self.doc.key_marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        return result

    def _merged_pairs(self, node, merging=()):
        """Key/value pairs with YAML merge keys (`<<: *base`) expanded; explicit keys win.

        Every pair a merge visits counts toward the node limit (a few hundred bytes of
        nested merges would otherwise take minutes), and a merge of itself is an error.
        """
        own = [(k, v) for k, v in node.value if k.tag != _STANDARD + "merge"]
        own_keys = {k.value for k, _ in own if isinstance(k, yaml.ScalarNode)}
        merged = []
        for key_node, value_node in node.value:
            if key_node.tag != _STANDARD + "merge":
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise self.error(source, "a merge key (<<) takes a mapping or a list of mappings")
                if source is node or id(source) in merging or id(source) in self.open:
                    raise self.error(key_node, "recursive merge: a mapping merges itself")
                for k, v in self._merged_pairs(source, (*merging, id(node))):
                    self.counted(k)
                    if k.value not in own_keys:
                        own_keys.add(k.value)
                        merged.append((k, v))
        return merged + own
