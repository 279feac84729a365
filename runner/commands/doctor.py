"""`pipe doctor`: is this installation one pipe can run on, and what to do when it is not."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import runner
from runner.environment import STACK, import_problem, installed

# The runtime libraries besides the stack that a run imports.
_OTHERS = ("pyyaml", "jsonschema", "typer", "matplotlib")


@dataclass
class Check:
    """One line of the report: ok, warn or fail, what was found, and the fix when not ok."""

    name: str
    status: str
    detail: str
    fix: str | None = None


def diagnose() -> list[Check]:
    """Every check, in the order the report prints them."""
    checks = [Check("pipe", "ok", f"pipe {runner.__version__}, Python {platform.python_version()}")]
    checks += [_package_check(distribution, module) for distribution, module in STACK]
    checks += [_package_check(name, None) for name in _OTHERS]
    if not any(c.status == "fail" for c in checks[1:3]):  # TensorFlow and Keras import
        checks += _device_checks()
        checks.append(_catalog_check())
    checks.append(_tfds_data_check())
    return checks


def render(checks: list[Check], fmt: str) -> str:
    """The report as text (one line per check, the fix on the same line) or JSON."""
    if fmt == "json":
        return json.dumps({"ok": healthy(checks), "checks": [asdict(c) for c in checks]}, indent=2)
    lines = []
    for check in checks:
        fix = f" (fix: {check.fix})" if check.fix else ""
        lines.append(f"{check.status:<5} {check.name}: {check.detail}{fix}")
    return "\n".join(lines)


def healthy(checks: list[Check]) -> bool:
    return not any(c.status == "fail" for c in checks)


def _package_check(distribution: str, module: str | None) -> Check:
    package = installed(distribution)
    if package.version is None:
        return Check(distribution, "fail", "not installed", f"pip install '{distribution}{package.declared or ''}'")
    problem = import_problem(distribution, module) if module else None
    if problem:
        return Check(distribution, "fail", problem.split(" (fix: ")[0], problem.split(" (fix: ", 1)[1].rstrip(")"))
    tested = f"tested range {package.declared}" if package.declared else "no declared range"
    if package.in_range is False:
        return Check(distribution, "warn", f"{package.version}, outside the {tested}",
                     f"pip install '{distribution}{package.declared}'")
    return Check(distribution, "ok", f"{package.version} ({tested})")


def _device_checks() -> list[Check]:
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    gpus = tf.config.list_physical_devices("GPU")
    build = dict(tf.sysconfig.get_build_info())
    cuda = (f"CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}"
            if build.get("is_cuda_build") else "a CPU-only build")
    checks = [Check("devices", "ok", f"{len(cpus)} CPU, {len(gpus)} GPU; TensorFlow is {cuda}")]
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = ".".join(map(str, details.get("compute_capability", ()))) or "unknown"
        checks.append(Check(gpu.name, "ok", f"{details.get('device_name', 'GPU')}, compute capability {capability}"))
    if not gpus:
        fix = None
        if build.get("is_cuda_build"):
            detail = ("no GPU visible: runs on the CPU (TensorFlow's CUDA libraries did not find a GPU "
                      "or its driver)")
            fix = "on a GPU machine: pip install 'pipe[gpu]' and check nvidia-smi"
        else:
            detail = "no GPU: this TensorFlow build runs on the CPU only"
        checks.append(Check("gpu", "ok", detail, fix))
    return checks


def _catalog_check() -> Check:
    """Whether validate's Keras catalog was made from the Keras installed here."""
    catalog = resources.files("runner") / "spec" / "keras_catalog.json"
    keras = installed("keras").version
    if not catalog.is_file():
        return Check("keras catalog", "warn", "no catalog shipped: validate checks Keras names at run time only")
    made_from = json.loads(catalog.read_text(encoding="utf-8")).get("keras_version")
    if made_from == keras:
        return Check("keras catalog", "ok", f"made from Keras {made_from}, as installed")
    return Check("keras catalog", "warn", f"made from Keras {made_from}, installed is {keras}: pipe validate "
                                          "may miss names this Keras added; pipe run trusts Keras")


def _tfds_data_check() -> Check:
    data_dir = Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()
    if not data_dir.is_dir():
        return Check("tfds data", "ok", f"{data_dir} does not exist yet (tfds sources download into it on first use)")
    prepared = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(("downloads", ".")))
    return Check("tfds data", "ok", f"{data_dir}: {', '.join(prepared) or 'no prepared datasets'}")


def main(fmt: str) -> int:
    checks = diagnose()
    print(render(checks, fmt))
    return 0 if healthy(checks) else 1



def report(fmt: str) -> None:
    """`pipe doctor`: the report, TensorFlow's start-up lines kept out of it; exit 1 when broken."""
    import typer

    from runner.console import TensorFlowLog

    log = TensorFlowLog.start()
    try:
        code = main(fmt)
    finally:
        log.stop()
    raise typer.Exit(code=code)


if __name__ == "__main__":
    sys.exit(main("text"))
