"""How long `pipe validate` (no TensorFlow) and `pipe plan` (with it) take on this machine.

validate: the wall time of `pipe validate specs/*.yaml` as a fresh process (what CI and
pre-commit pay), repeated, and alternated with `python -c pass` as the control for the
machine's load; plus, in-process, the one-time cost of reading the Keras catalog.

plan: in one process, `import tensorflow` timed apart from `plan_spec` on the spec
(default the Fashion-MNIST example, which needs /usr/share/datasets/fashion-mnist).

    python benchmarks/validate_and_plan.py [--repeats 5] [--spec specs/fashion_mnist.yaml] [--no-plan]
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts, not an installed package


def _wall(command) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run of `command` as a child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_validate(repeats: int) -> None:
    specs = sorted(glob.glob(str(REPO / "specs" / "*.yaml")))
    validate = [sys.executable, "-m", "runner.cli", "validate", *specs]
    control = [sys.executable, "-c", "pass"]
    runs, controls = [], []
    for _ in range(repeats):  # alternated, so load hits both alike
        runs.append(_wall(validate))
        controls.append(_wall(control))
    for label, timings in ((f"pipe validate specs/*.yaml ({len(specs)} specs)", runs), ("python -c pass", controls)):
        walls, cpus = [w for w, _ in timings], [c for _, c in timings]
        print(f"{label}, {repeats} runs: wall median {statistics.median(walls):.3f} s, min {min(walls):.3f} s; "
              f"CPU median {statistics.median(cpus):.3f} s")
    code = ("import time; from runner.spec import catalog; t = time.perf_counter(); catalog.load_catalog(); "
            "print(time.perf_counter() - t)")
    costs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}).stdout) for _ in range(repeats)]
    print(f"reading the Keras catalog once: median {statistics.median(costs) * 1000:.1f} ms")


def bench_plan(spec_path: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    start = time.perf_counter()
    import tensorflow  # noqa: F401
    import keras  # noqa: F401

    imported = time.perf_counter()
    from runner.commands.planning import plan_spec
    from runner.spec import load_spec

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    plan = plan_spec(load_spec(spec_path))
    done = time.perf_counter()
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (used.ru_utime - cpu.ru_utime) + (used.ru_stime - cpu.ru_stime)
    print(f"pipe plan {spec_path}: import tensorflow+keras {imported - start:.2f} s, "
          f"plan {done - imported:.2f} s wall ({cpu_seconds:.2f} s CPU, all threads), errors {len(plan.errors)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spec", default="specs/fashion_mnist.yaml")
    parser.add_argument("--no-plan", action="store_true")
    parser.add_argument("--no-validate", action="store_true")
    options = parser.parse_args()
    if not options.no_validate:
        bench_validate(options.repeats)
    if not options.no_plan:
        bench_plan(options.spec)


if __name__ == "__main__":
    main()
