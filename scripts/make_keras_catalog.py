"""Generate runner/spec/keras_catalog.json from the installed Keras, or check it for drift.

    python scripts/make_keras_catalog.py            # (re)write the catalog
    python scripts/make_keras_catalog.py --check    # exit 1 when the file differs from Keras

`pipe validate` never imports Keras (importing it costs seconds), yet it checks every Keras
name and argument a spec writes. It reads them from this catalog: every public class and
function of the Keras namespaces a spec can name, with the arguments its constructor
accepts (collected along the class's `__init__` chain, including the keyword arguments a
base class pops from `**kwargs`, such as a layer's `input_shape`), and the aliases Keras's
own `get` resolves (`adam`, `mse`), found by asking Keras about every name its modules hold.
Nothing here is a hand-written list of Keras names.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import json
import os
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from keras_catalog_layers import call_arguments, layer_facts  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CATALOG = Path(__file__).resolve().parents[1] / "runner" / "spec" / "keras_catalog.json"

# kind -> (public namespace, base class whose subclasses count, or None for functions too)
KINDS = {
    "layers": ("keras.layers", "keras.layers.Layer"),
    "activations": ("keras.activations", None),
    "losses": ("keras.losses", None),
    "optimizers": ("keras.optimizers", "keras.optimizers.Optimizer"),
    "schedules": ("keras.optimizers.schedules", "keras.optimizers.schedules.LearningRateSchedule"),
    "metrics": ("keras.metrics", None),
    "callbacks": ("keras.callbacks", "keras.callbacks.Callback"),
    "initializers": ("keras.initializers", None),
    "regularizers": ("keras.regularizers", None),
    "constraints": ("keras.constraints", None),
    # Backbones (MobileNetV3Small, ResNet50, ...): model functions, named where a layer goes.
    "applications": ("keras.applications", None),
}

# kind -> (family base, {entry: work}): Keras calls a class's `entry` and the base's entry
# leaves its `work` to subclasses, defined on the base only to raise NotImplementedError
# (Loss.__call__ -> call, Optimizer.apply -> update_step). A class is abstract when its
# work still only raises and its entry is the base's: using it fails at run time. A class
# with its own entry (LossScaleOptimizer.apply hands the work to an inner optimizer) is not.
WORK = {
    "layers": ("keras.layers.Layer", {"__call__": "call"}),
    "losses": ("keras.losses.Loss", {"__call__": "call"}),
    "metrics": ("keras.metrics.Metric", {"update_state": "update_state", "result": "result"}),
    "optimizers": ("keras.optimizers.Optimizer", {"apply": "update_step"}),
    "schedules": ("keras.optimizers.schedules.LearningRateSchedule", {"__call__": "__call__"}),
    "initializers": ("keras.initializers.Initializer", {"__call__": "__call__"}),
}


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    try:
        return importlib.import_module(dotted)
    except ImportError:
        return getattr(importlib.import_module(module), attr)


def _public(module, base) -> dict:
    """Name -> object of the classes and functions a namespace exports, without its own API."""
    own = {getattr(module, n, None) for n in ("get", "serialize", "deserialize")}
    found = {}
    for name in sorted(dir(module)):
        obj = getattr(module, name)
        if name.startswith("_") or obj in own or not callable(obj) or inspect.ismodule(obj):
            continue
        if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
            continue
        found[name] = obj
    return found


def _only_raises(function) -> bool:
    """Whether a function's body (past its docstring) is one `raise` statement."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = [s for s in tree.body[0].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Raise)


def _is_abstract(kind: str, obj) -> bool:
    """Whether Keras leaves the work of class `obj` undone (see WORK): a base, not one to use."""
    if not isinstance(obj, type):
        return False
    if inspect.isabstract(obj):
        return True
    if kind not in WORK:
        return False
    base_name, work = WORK[kind]
    base = _resolve(base_name)
    if not issubclass(obj, base):
        return False
    return any(getattr(obj, entry) is getattr(base, entry) and _only_raises(getattr(obj, method))
               for entry, method in work.items())


def _simple_type(default, annotation):
    if annotation is not inspect.Parameter.empty:
        text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
        if text in ("int", "float", "str", "bool"):
            return text
    if isinstance(default, bool):
        return "bool"
    for python_type in (int, float, str):
        if type(default) is python_type:
            return python_type.__name__
    return None


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and value != value:  # NaN
            return repr(value)
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str, type(None))) for v in value):
        return list(value)
    return repr(value)


def _popped_keywords(function) -> list[str]:
    """Names a function reads out of its **kwargs: kwargs.pop("x"), kwargs.get("x"), "x" in kwargs."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return []
    names = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("pop", "get") and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "kwargs" and node.args and isinstance(node.args[0], ast.Constant)):
            names.append(node.args[0].value)
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.left.value, str) and any(isinstance(op, ast.In) for op in node.ops)
              and any(isinstance(c, ast.Name) and c.id == "kwargs" for c in node.comparators)):
            names.append(node.left.value)
    return [n for n in names if isinstance(n, str)]


def _forwards_kwargs(function) -> bool:
    """Whether a function passes its **kwargs on to another call (usually super().__init__)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    return any(
        isinstance(node, ast.Call) and any(k.arg is None and isinstance(k.value, ast.Name) and k.value.id == "kwargs"
                                           for k in node.keywords)
        for node in ast.walk(tree)
    )


def _passed_on(function) -> tuple[int, set]:
    """What the call forwarding **kwargs fills in itself: its positional count and keywords."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return 0, set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"
                and any(k.arg is None for k in node.keywords)):
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            if isinstance(node.func.value, ast.Name):
                positional = positional[1:]  # Base.__init__(self, ...)
            return len(positional), {k.arg for k in node.keywords if k.arg}
    return 0, set()


def _rejects_leftover_kwargs(function) -> bool:
    """Whether a function raises when keywords are left in its **kwargs (`if kwargs: raise`)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    return any(
        isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "kwargs"
        and any(isinstance(n, ast.Raise) for n in ast.walk(node))
        for node in ast.walk(tree)
    )


def _arguments(obj) -> dict:
    """The arguments `obj(...)` accepts: {args: [...], open: bool}.

    For a class, its `__init__` and, while an `__init__` forwards **kwargs, the `__init__`
    of the next class of the MRO, as Keras's own classes do (Dense -> Layer). `open` is
    true when some **kwargs are neither forwarded nor checked by Keras code we can read.
    """
    args, seen = [], set()
    chain = [obj]
    if isinstance(obj, type):
        chain = [c.__dict__["__init__"] for c in obj.__mro__ if "__init__" in c.__dict__ and c is not object]
    is_open = False
    given = (0, set())  # what the previous __init__ passes itself: (positional count, keywords)
    for function in chain:
        module = getattr(function, "__module__", "") or ""
        if not module.startswith("keras"):
            break  # TensorFlow's Trackable and friends: not a spec argument
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            is_open = True
            break
        variadic = False
        positional, keywords = given
        for index, parameter in enumerate(p for p in signature.parameters.values() if p.name != "self"):
            if index < positional or parameter.name in keywords:
                continue  # the subclass fills it in (LSTM passes RNN its cell)
            if parameter.kind is parameter.VAR_KEYWORD:
                variadic = True
                continue
            if parameter.kind is parameter.VAR_POSITIONAL or parameter.name in seen:
                continue
            seen.add(parameter.name)
            required = parameter.default is inspect.Parameter.empty
            entry = {"name": parameter.name, "required": required}
            if not required:
                entry["default"] = _jsonable(parameter.default)
            kind = _simple_type(None if required else parameter.default, parameter.annotation)
            if kind:
                entry["type"] = kind
            args.append(entry)
        if not variadic:
            is_open = False
            break
        for name in _popped_keywords(function):
            if name not in seen:
                seen.add(name)
                args.append({"name": name, "required": False, "default": None, "via_kwargs": True})
        if _rejects_leftover_kwargs(function):
            break  # `if kwargs: raise ...`: nothing else is accepted
        # **kwargs that go nowhere we can read: Keras accepts (and ignores) any keyword.
        is_open = not _forwards_kwargs(function)
        if is_open:
            break
        given = _passed_on(function)
    return {"args": args, "open": is_open}


def _aliases(module, public: dict) -> dict:
    """alias -> public name, for every string Keras's `module.get` resolves.

    The candidate strings are the names Keras's modules hold (the public namespace, its
    private implementation package and that package's deserialization table), in the
    spelling they are written and in lower case.
    """
    get = getattr(module, "get", None)
    if get is None:
        return {}
    candidates = set(public) | {n.lower() for n in public}
    try:
        private = importlib.import_module(module.__name__.replace("keras.", "keras.src.", 1))
        candidates |= {n for n in dir(private) if not n.startswith("_")}
        candidates |= {n for n in getattr(private, "ALL_OBJECTS_DICT", {}) if isinstance(n, str)}
    except ImportError:
        pass
    by_object = {}
    for name, obj in public.items():
        by_object.setdefault(id(obj), name)
    aliases = {}
    for candidate in sorted(candidates):
        if candidate in public:
            continue
        try:
            resolved = get(candidate)
        except Exception:
            continue
        if resolved is None or isinstance(resolved, str):
            continue
        target = by_object.get(id(resolved)) or by_object.get(id(type(resolved)))
        if target is None and isinstance(resolved, type):
            target = by_object.get(id(resolved))
        if target is not None:
            aliases[candidate] = target
    return aliases


def build_catalog() -> dict:
    import keras

    kinds = {}
    for kind, (namespace, base_name) in KINDS.items():
        module = _resolve(namespace)
        base = _resolve(base_name) if base_name else None
        public = _public(module, base)
        if kind == "applications":  # the model functions, not the helpers beside them
            public = {n: o for n, o in public.items() if n[:1].isupper() and not isinstance(o, type)}
        entries = {}
        for name, obj in public.items():
            entry = {"kind": "class" if isinstance(obj, type) else "function"}
            if _is_abstract(kind, obj):
                entry["abstract"] = True
            entry.update(_arguments(obj))
            if kind == "layers" and isinstance(obj, type):
                layer_facts(obj, entry)
            if kind == "applications":  # a backbone is a functional Model, called as one
                from keras.src.models.functional import Functional

                entry["call"] = call_arguments(Functional.call)
            entries[name] = entry
        kinds[kind] = {"namespace": namespace, "names": entries, "aliases": _aliases(module, public)}
    return {
        "about": "Generated by scripts/make_keras_catalog.py from the installed Keras; do not edit.",
        "keras_version": keras.__version__,
        "kinds": kinds,
    }


def verify(catalog: dict) -> list[str]:
    """Cross-check the derived arguments against Keras itself.

    Every class that Keras can construct without arguments is constructed, and each key of
    its `get_config()` (the arguments Keras itself would pass back to the constructor)
    must be among the arguments the catalog says it accepts; otherwise `pipe validate`
    would reject a spec Keras takes. Returns the problems found.
    """
    import warnings

    problems = []
    for kind, (namespace, _) in KINDS.items():
        module = _resolve(namespace)
        for name, entry in catalog["kinds"][kind]["names"].items():
            if entry["kind"] != "class" or any(a["required"] for a in entry["args"]):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    config = getattr(module, name)().get_config()
            except Exception:
                continue  # not constructible bare (or no config): nothing to compare
            unknown = set(config) - {a["name"] for a in entry["args"]}
            if unknown:
                problems.append(f"{kind}.{name}: get_config() has {sorted(unknown)} the catalog does not accept")
    return problems


def render(catalog: dict) -> str:
    return json.dumps(catalog, indent=1, sort_keys=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the catalog differs from the installed Keras")
    parser.add_argument("--output", type=Path, default=CATALOG)
    options = parser.parse_args(argv)
    catalog = build_catalog()
    problems = verify(catalog)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print("the derived arguments disagree with Keras: fix scripts/make_keras_catalog.py", file=sys.stderr)
        return 2
    text = render(catalog)
    if not options.check:
        options.output.write_text(text, encoding="utf-8")
        print(f"wrote {options.output}")
        return 0
    current = options.output.read_text(encoding="utf-8") if options.output.exists() else ""
    if current == text:
        print(f"{options.output}: up to date with Keras {json.loads(text)['keras_version']}")
        return 0
    diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "catalog", "installed keras", lineterm="", n=1)
    print("\n".join(list(diff)[:40]))
    print(f"{options.output} differs from the installed Keras: run python scripts/make_keras_catalog.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
