"""The package layout the README describes: one-way arrows, no cycles, no TensorFlow in spec."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "runner"

# Which packages each package may import (besides itself): arrows point down, from the
# commands to the run they start, to its parts, to the spec. `runner.cli` at the top may
# import any of them.
_PARTS = {"spec", "internals", "errors"}
ALLOWED = {
    "errors": set(),  # the error family every part raises: a leaf any package may import
    "spec": {"errors"},
    "internals": {"errors"},  # the one door to private Keras/TensorFlow APIs, for any part but spec
    "console": {"errors"},
    "environment": {"errors"},
    "data": _PARTS,
    "models": _PARTS,
    "train": _PARTS | {"models"},
    "outputs": _PARTS | {"data", "models"},
    "export": _PARTS | {"data", "models", "outputs"},
    "run": _PARTS | {"data", "models", "train", "outputs", "export", "console", "environment"},
    "sweep": _PARTS | {"run", "outputs"},
    "commands": _PARTS | {"data", "models", "train", "outputs", "export", "run", "sweep", "console", "environment"},
}
TOP_MODULES = 8  # runner/*.py at most: the packages hold the rest


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every runner module and the runner modules it imports (at any depth of its code)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("runner"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("runner")}
        found[name] = {t for t in targets if t in modules and t != name}
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_packages_import_only_along_the_arrows():
    wrong = []
    for module, targets in _imports().items():
        package = _package(module)
        if package is None:
            continue
        for target in targets - {"runner"}:  # the root package holds only the version
            other = _package(target)
            if other != package and other not in ALLOWED[package]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_import_cycles():
    graph = _imports()
    cycles = []

    def visit(module, trail):
        for target in graph[module]:
            if target in trail:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in done:
                visit(target, trail + [target])
        done.add(module)

    done: set[str] = set()
    for module in graph:
        if module not in done:
            visit(module, [module])
    assert cycles == []


def test_spec_package_and_cli_never_import_tensorflow():
    modules = sorted(m for m in _imports() if m == "runner.spec" or m.startswith("runner.spec.")) + ["runner.cli"]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tensorflow_datasets')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout == "[]\n", result.stderr


def test_few_modules_at_the_top_of_runner():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_MODULES, top


def test_no_module_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
