"""The installed stack: declared ranges, versions, and imports that fail with a reason.

A half-installed stack (for example tfds importing against a protobuf TensorFlow's floor
does not satisfy) otherwise surfaces much later as an AttributeError. Nothing here imports
TensorFlow at module import time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata

from runner.errors import EXIT_BROKEN_INSTALL, PipeError

# The libraries a run imports: (distribution, module whose import proves it works).
# tfds's package imports lazily; `tensorflow_datasets.core` is where a broken install fails.
STACK = (
    ("tensorflow", "tensorflow"),
    ("keras", "keras"),
    ("tensorflow-datasets", "tensorflow_datasets.core"),
    ("numpy", "numpy"),
    ("protobuf", "google.protobuf"),
)


class BrokenInstall(PipeError):
    """A library pipe needs cannot be imported; the message says which, why and what to do."""

    exit_code = EXIT_BROKEN_INSTALL


@dataclass
class Package:
    """One library of the stack as installed, against the range pipe declares for it."""

    name: str
    version: str | None
    declared: str | None  # the specifier in pipe's requirements, e.g. ">=2.16,<2.22"
    in_range: bool | None  # None when pipe declares no range or the package is missing


def installed(name: str) -> Package:
    """The installed version of a distribution and whether it is within pipe's range."""
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = None
    specifier = declared_ranges().get(_normal(name))
    in_range = None
    if version is not None and specifier is not None:
        in_range = specifier.contains(version, prereleases=True)
    return Package(name, version, _show(specifier) if specifier is not None else None, in_range)


def declared_ranges() -> dict:
    """pipe's runtime requirements as `{normalised name: SpecifierSet}` (extras left out)."""
    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires("pipe") or []
    except metadata.PackageNotFoundError:
        return {}
    ranges = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None:
            ranges[_normal(requirement.name)] = requirement.specifier
    return ranges


def import_problem(distribution: str, module: str) -> str | None:
    """None when `module` imports; else one line: what failed, why, and the fix."""
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken install raises anything: ImportError, TypeError, ...
        package = installed(distribution)
        if package.version is None:
            return f"{distribution} is not installed (fix: pip install '{distribution}{package.declared or ''}')"
        reason = f"{type(e).__name__}: {_first_line(e)}"
        fix = _fix(distribution, package, reason)
        return f"{distribution} {package.version} cannot be imported: {reason} (fix: {fix})"
    return None


def require(*distributions: str) -> None:
    """Import each named library of the stack, or raise BrokenInstall saying why.

    Raises:
        BrokenInstall: the first library that does not import, with its reason and fix.
    """
    modules = dict(STACK)
    for distribution in distributions:
        problem = import_problem(distribution, modules[distribution])
        if problem:
            raise BrokenInstall(problem)


def _fix(distribution: str, package: Package, reason: str) -> str:
    if package.in_range is False:
        return f"pip install '{distribution}{package.declared}' (pipe is tested with {package.declared})"
    if "protobuf" in reason.lower() or "descriptor" in reason.lower():
        protobuf = installed("protobuf")
        return (f"protobuf {protobuf.version} does not suit this stack; install the versions pipe is "
                "tested with (see `pipe doctor`, and the tested versions in docs/troubleshooting.md)")
    return f"pip install --force-reinstall '{distribution}{package.declared or ''}', then run pipe doctor"


def libraries_for(data) -> tuple[str, ...]:
    """The libraries a run of this spec imports (tfds only for tfds sources).

    `data` is the spec's `DataConfig` (`spec.sections.data`), or a whole spec document.
    """
    if hasattr(data, "splits"):
        sources = [split.source for split in data.splits.values()]
    else:
        sources = [split.get("source") for split in (data.get("data") or {}).values() if isinstance(split, dict)]
    uses_tfds = any("tfds" in (source or {}) for source in sources)
    return ("tensorflow", "keras", "protobuf") + (("tensorflow-datasets",) if uses_tfds else ())


def _show(specifier) -> str:
    """`>=2.16,<2.22`: lower bounds first, as people write ranges."""
    return ",".join(sorted(map(str, specifier), key=lambda s: not s.startswith((">", "~", "="))))


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
