"""Specs made of several files: `extends:` chains and layered files, merged with their marks.

A spec may start with `extends: base.yaml` (or a list of paths), relative to the file that
names it. Bases are merged in order, then the file itself; files given together on the
command line are merged the same way, later over earlier. Mappings merge key by key, lists
and single values replace, and `null` removes a key (one the bases do not have is an error). Where a Keras identifier
goes (`identifier_position`), one naming another class (`{SGD: {...}}` or `class_name: SGD`
over `{Adam: {...}}`) replaces rather than merges, and one naming the same class in another
form or spelling (`{adam: {...}}`) merges its arguments into the base's. Every value keeps the file, line and
column that set it, so an error points at the base when the child did not override it.

A base is a spec file: its name ends in `.yaml` or `.yml` (so `extends: /etc/shadow` cannot
print another file's lines as "unknown keys" in a CI log), and `~` is not expanded.

The limits of one file hold across all of them: the values of every file that goes into a
spec count toward one node limit, a chain is at most `MAX_EXTENDS_DEPTH` files deep, and an
`extends` path that is missing, a folder, a FIFO or a device, or that closes a cycle is an
error at the `extends` line that leads there. Parsed files are cached (by path, size and
modification time), so 200 specs extending one base read it once.
"""

from __future__ import annotations

import copy
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from runner.spec import yamlfile
from runner.spec.errors import SpecError, SpecErrors, did_you_mean

MAX_EXTENDS_DEPTH = 16
MAX_LOADS = 1000  # files read for one spec, a base reached twice counted twice
_CLASS_NAME = re.compile(r"[A-Z][A-Za-z0-9_]*")
_CACHE: dict = {}  # (resolved path, size, mtime_ns) -> yamlfile.Document
_CACHE_LIMIT = 512


@dataclass
class Composed:
    """A merged document with marks `(line, column, file)` and the files that went into it."""

    doc: object
    key_marks: dict = field(default_factory=dict)
    value_marks: dict = field(default_factory=dict)
    sources: list = field(default_factory=list)  # display paths, in the order first read
    texts: dict = field(default_factory=dict)  # display path -> the text read from it
    removed: dict = field(default_factory=dict)  # path a `null` removed -> the null's mark


def compose(files) -> Composed:
    """Merge the spec files `files` (later over earlier), each with its `extends` chain.

    Raises:
        SpecErrors: a file that cannot be read or parsed, or a bad `extends`, located.
    """
    files = [Path(f) for f in files]
    state = _State()
    try:
        result = None
        for file in files:
            layer = state.load(file, chain=(), depth=0, via=None)
            result = layer if result is None else _merge(result, layer)
    except SpecError as e:
        if e.file is not None and (str(e.file) != str(files[-1]) or len(files) > 1) and e.via is None:
            e.via = " + ".join(map(str, files)) if len(files) > 1 else files[-1]
        raise SpecErrors([e]) from None
    result.sources, result.texts = state.sources, state.texts
    for path, mark in result.removed.items():
        result.key_marks.setdefault(path, mark)
    return result


class _State:
    """One composition: the files read so far and the values counted across them."""

    def __init__(self):
        self.count, self.sources, self.texts = 0, [], {}
        self.counted, self.loads, self.applied = set(), 0, set()

    def load(self, file: Path, chain: tuple, depth: int, via) -> Composed:
        """`file` merged over its bases; `via` locates the `extends` entry that named it.

        A base is applied once, where it is first reached (depth first, in order): in a
        diamond (`extends: [left, right]`, both extending `shared`), `right` does not bring
        `shared` back over what `left` changed."""
        if via is not None and _identity(file) in self.applied:
            return Composed({})
        self.applied.add(_identity(file))
        document, text = _parse(file)
        self.loads += 1
        if self.loads > MAX_LOADS:
            raise _at(via, f"extends reads files more than {MAX_LOADS} times (the same bases named over and over?)")
        if _identity(file) not in self.counted:  # a base reached twice adds its values once
            self.counted.add(_identity(file))
            self.count += document.count
        if self.count > yamlfile.MAX_NODES:
            raise _at(via, f"the spec and its bases expand to more than {yamlfile.MAX_NODES} values "
                           f"(extends used as a bomb?)") if via else SpecError(
                f"document expands to more than {yamlfile.MAX_NODES} values", file=file, line=1, column=1)
        if str(file) not in self.sources:
            self.sources.append(str(file))
            self.texts[str(file)] = text
        own = _marked(document, file)
        if not isinstance(own.doc, dict):
            kind = "a list" if isinstance(own.doc, list) else "a single value"
            raise SpecError(f"the top level must be a mapping of sections, not {kind}", file=file, line=1, column=1)
        bases = self._extends(own, file)
        if not bases:
            return own
        chain = (*chain, (_identity(file), str(file)))
        if depth + 1 > MAX_EXTENDS_DEPTH:
            _, where = bases[0]
            raise _at(where, f"extends is more than {MAX_EXTENDS_DEPTH} files deep")
        result = None
        for base, where in bases:
            problem = _file_problem(base) or _link_problem(base)
            if problem:
                raise _at(where, problem)
            if _identity(base) in [identity for identity, _ in chain]:
                names = [shown for _, shown in chain] + [str(base)]
                raise _at(where, f"extends makes a cycle: {' -> '.join(names)}")
            layer = self.load(base, chain, depth + 1, where)
            result = layer if result is None else _merge(result, layer)
        return _merge(result, own)

    def _extends(self, own: Composed, file: Path) -> list:
        """The bases `own` names, each with where it is named; `extends` removed from `own`."""
        if "extends" not in own.doc:
            return []
        value = own.doc.pop("extends")
        key = own.key_marks.pop(("extends",))
        entries = value if isinstance(value, list) else [value]
        paths = [("extends", i) for i in range(len(entries))] if isinstance(value, list) else [("extends",)]
        where_all = (file, own.value_marks.get(("extends",), key), ("extends",))
        if isinstance(value, list) and not value:
            raise _at(where_all, "extends lists no file; give a path or remove it")
        bases = []
        for entry, path in zip(entries, paths):
            mark = own.value_marks.get(path, key)
            where = (file, mark, path)
            if not isinstance(entry, str) or not entry.strip():
                raise _at(where, f"expected a path to a spec file, got {_describe(entry)}")
            if "://" in entry:
                raise _at(where, f"'{entry}' is a URL; extends names local files only")
            if entry.startswith("~"):
                raise _at(where, f"'{entry}': extends does not expand '~'; give a path relative to this file "
                                 f"or an absolute one")
            if "${" in entry:
                raise _at(where, f"'{entry}': references are not resolved in extends; write the path itself")
            if entry.endswith(("/", os.sep)):
                raise _at(where, f"'{entry}' ends with '/'; extends names a spec file, not a folder")
            if Path(entry).suffix.lower() not in (".yaml", ".yml"):
                raise _at(where, f"'{entry}' is not a .yaml or .yml file; extends names spec files only")
            base = Path(entry)
            base = base if base.is_absolute() else Path(os.path.normpath(file.parent / base))
            bases.append((base, where))
        for table in (own.key_marks, own.value_marks):
            for path in [p for p in table if p[:1] == ("extends",)]:
                del table[path]
        return bases


def _parse(file: Path):
    """(parsed document, text) of `file`, from the cache when the file has not changed."""
    try:
        info = file.stat()
        key = (str(file.resolve()), info.st_size, info.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    text = yamlfile.read_text(file)
    document = yamlfile.parse(text, file=file)
    if key is not None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[key] = document, text
    return document, text


def _marked(document, file: Path) -> Composed:
    """A private copy of a parsed file's values, its marks carrying the file."""
    return Composed(copy.deepcopy(document.data),
                    {p: (line, column, file) for p, (line, column) in document.key_marks.items()},
                    {p: (line, column, file) for p, (line, column) in document.value_marks.items()})


def _file_problem(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as e:
        return f"cannot read {path}: {e.strerror}"
    if stat.S_ISDIR(mode):
        return f"{path} is a directory, not a spec file"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file (a pipe or a device); a spec is a small YAML file"
    return None


def _link_problem(path: Path) -> str | None:
    """A `.yaml` name that links to another kind of file: what extends reads is the target."""
    target = path.resolve()
    if target.suffix.lower() not in (".yaml", ".yml"):
        return f"{path} links to {target}, not a .yaml or .yml file; extends names spec files only"
    return None


def _identity(path: Path) -> str:
    return str(path.resolve())


def _at(where, message: str) -> SpecError:
    file, (line, column, *_), path = where
    return SpecError(message, file=file, line=line, column=column, path=path)


def _describe(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def merge_values(base, layer):
    """`layer` over `base` by the rules of `extends`, for plain values (a sweep's trial over
    its base): mappings key by key, lists and single values replace, `None` removes a key.
    Neither argument is changed."""
    return copy.deepcopy(_merge(Composed(base), Composed(layer), strict=False).doc)


def _merge(base: Composed, layer: Composed, strict=True) -> Composed:
    """`layer` over `base`: a new Composed; neither is changed. `strict`: a `null` for a key
    `base` does not have is an error (a misspelt `metrcs: null` would remove nothing)."""
    out = Composed(None, removed={**base.removed, **layer.removed})
    out.doc = _merge_node(base, layer, base.doc, layer.doc, (), out, strict)
    out.removed = {p: mark for p, mark in out.removed.items() if p not in out.key_marks}
    return out


def _removes_nothing(layer, key, old, path) -> SpecError:
    line, column, file = layer.value_marks.get(path) or layer.key_marks[path]
    return SpecError(f"null removes nothing: no key '{key}' in the bases", file=file, line=line, column=column,
                     path=path, hint=did_you_mean(key, list(old)))


def _merge_node(base, layer, old, new, path, out, strict=True):
    if not (isinstance(old, dict) and isinstance(new, dict)):
        _take(layer, new, path, out)
        return new
    for table, below, above in ((out.key_marks, base.key_marks, layer.key_marks),
                                (out.value_marks, base.value_marks, layer.value_marks)):
        mark = above.get(path) or below.get(path)
        if mark:
            table[path] = mark
    merged = {}
    for key, value in [*old.items(), *((k, v) for k, v in new.items() if k not in old)]:
        child = path + (key,)
        if key not in new:
            merged[key] = value
            _take(base, value, child, out)
        elif new[key] is None:
            if key not in old and strict:
                raise _removes_nothing(layer, key, old, child)
            mark = layer.key_marks.get(child)
            if mark:
                out.removed[child] = mark  # an error about the removed key points at the null
            continue  # null removes a key
        elif isinstance(old.get(key), dict) and isinstance(new[key], dict) and not _another_class(old[key], new[key], child):
            above, value = _same_class_form(layer, old[key], new[key], child)
            merged[key] = _merge_node(base, above, old[key], value, child, out, strict)
        else:
            merged[key] = new[key]
            _take(layer, new[key], child, out)
    return merged


def identifier_position(path: tuple) -> bool:
    """Whether a Keras identifier is written at `path` in a spec: the optimizer, the loss (or
    one output's loss), a phase's optimizer, or an argument that takes one (an initializer,
    regularizer, constraint, activation, a wrapped layer, a learning-rate schedule) inside
    one of them. Lists (layers, metrics, callbacks) replace whole, so only these merge."""
    if path in (("train", "optimizer"), ("train", "loss")) or (len(path) == 3 and path[:2] == ("train", "loss")):
        return True
    if len(path) == 4 and path[:2] == ("train", "phases") and path[3] == "optimizer":
        return True
    if len(path) >= 3 and isinstance(path[-1], str) and _takes_identifier(path[-1]):
        return identifier_position(path[:-2])
    return False


def _takes_identifier(argument: str) -> bool:
    return (argument in ("activation", "learning_rate", "layer", "backward_layer")
            or argument.endswith(("_activation", "_initializer", "_regularizer", "_constraint")))


def class_of(value):
    """(class name, key holding the arguments) of an identifier mapping, or None when it is not
    one form: `{Adam: {...}}` -> ("Adam", "Adam"); `{class_name: Adam, config: {...}}` ->
    ("Adam", "config")."""
    if not isinstance(value, dict):
        return None
    if "class_name" in value:
        if set(value) <= {"class_name", "config"} and isinstance(value["class_name"], str):
            return value["class_name"], "config"
        return None
    if len(value) == 1 and isinstance(next(iter(value)), str):
        return next(iter(value)), next(iter(value))
    return None


def _same_class(a: str, b: str) -> bool:
    """Keras's names for one class: `Adam`/`adam`, `MeanSquaredError`/`mean_squared_error`."""
    return a.replace("_", "").lower() == b.replace("_", "").lower()


def _another_class(old: dict, new: dict, path: tuple) -> bool:
    """At a Keras identifier's place, both name a class in either form and the classes differ:
    the layer's replaces the base's whole, arguments and all, rather than merging into a
    mapping of two names."""
    if not identifier_position(path):
        return False
    old_class, new_class = class_of(old), class_of(new)
    if new_class is None:
        return True  # names mixed in the layer: its own mistake, reported alone
    return old_class is not None and not _same_class(old_class[0], new_class[0])


def _same_class_form(layer, old: dict, new: dict, path: tuple):
    """(layer, value) with `new` written in `old`'s form when both name one class in different
    forms or spellings (`{adam: {...}}` over `{Adam: {...}}`, a short form over `class_name`),
    so their arguments merge; the layer's marks move along."""
    old_class, new_class = class_of(old), class_of(new)
    if (not identifier_position(path) or old_class is None or new_class is None
            or old_class[1] == new_class[1] or new[new_class[1]] is None):
        return layer, new
    value = {old_class[1]: new[new_class[1]]}
    source, target = path + (new_class[1],), path + (old_class[1],)

    def moved(table):
        return {(target + p[len(source):] if p[:len(source)] == source else p): mark for p, mark in table.items()
                if p[:len(path) + 1] != path + ("class_name",)}
    return Composed(None, moved(layer.key_marks), moved(layer.value_marks), removed=layer.removed), value


def _take(source, value, path, out):
    """Copy the marks of `value` (at `path` in `source`) into `out`."""
    for table, target in ((source.key_marks, out.key_marks), (source.value_marks, out.value_marks)):
        if path in table:
            target[path] = table[path]
    if isinstance(value, dict):
        for key, item in value.items():
            _take(source, item, path + (key,), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _take(source, item, path + (i,), out)


def clear_cache() -> None:
    """Forget every parsed file (tests that rewrite a file within one timestamp tick)."""
    _CACHE.clear()
