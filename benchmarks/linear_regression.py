"""Epochs per second of the seed's linear regression: pipe's custom loop against the seed's loops.

In one process, alternating repetitions (load from other processes hits all alike):
`run_spec(specs/linear_regression.yaml)` with its default checkpointing and no report
lines (`quiet`), the seed's loop with the step under `tf.function`, and the seed's eager
loop. Each is timed from the first epoch to the last, tracing included (every repetition
builds its functions anew, as a new process would); pipe's figure is its training loop
(`CustomLoop.fit`), the whole run_spec is reported beside it. Wall time and CPU time
(`time.process_time`, every thread of the process) are both measured: on a shared
machine the CPU time is the steadier of the two.

    python benchmarks/linear_regression.py --epochs 2000 --repeats 5 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import runner.run.pipeline  # noqa: E402
import runner.train.custom  # noqa: E402
import runner.train.fused  # noqa: E402
from benchmarks.hand_written import linear_regression  # noqa: E402
from runner.spec import load_spec  # noqa: E402


def run_pipe(epochs: int, outputs: Path, overrides=()) -> dict:
    """The spec's run; seconds of its training loop and of the whole run_spec."""
    loop_seconds, loop_cpu = [], []
    loops = (runner.train.custom.CustomLoop, runner.train.fused.FusedLoop)
    originals = [loop.fit for loop in loops]

    def timer(original):
        def timed(self, *args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return original(self, *args, **kwargs)
            finally:
                loop_seconds.append(time.perf_counter() - start)
                loop_cpu.append(time.process_time() - cpu)
        return timed

    spec = load_spec(REPO / "specs" / "linear_regression.yaml",
                     [f"train.epochs={epochs}", f"outputs.dir={outputs}", *overrides])
    for loop, original in zip(loops, originals):
        loop.fit = timer(original)
    try:
        start = time.perf_counter()
        result = runner.run.pipeline.run_spec(spec, quiet=True)
        whole = time.perf_counter() - start
    finally:
        for loop, original in zip(loops, originals):
            loop.fit = original
    return {"seconds": loop_seconds[0], "cpu": loop_cpu[0], "whole": whole, "loss": result.metrics["train"]["loss"]}


def measure(epochs: int, repeats: int, eager: bool = True) -> dict:
    outputs = Path(tempfile.mkdtemp(prefix="pipe-linear-"))
    programs = {
        "pipe custom loop": lambda: run_pipe(epochs, outputs),
        "pipe fused": lambda: run_pipe(epochs, outputs, ["train.engine=fused"]),
        "seed tf.function": lambda: linear_regression(epochs, compiled=True),
    }
    if eager:
        programs["seed eager"] = lambda: linear_regression(epochs, compiled=False)
    results = {name: [] for name in programs}
    run_pipe(2, outputs)  # one-time costs of the process (runtime start, first imports)
    run_pipe(2, outputs, ["train.engine=fused"])
    linear_regression(2)
    for repeat in range(repeats):
        order = list(programs) if repeat % 2 == 0 else list(programs)[::-1]
        for name in order:
            results[name].append(programs[name]())
    return {"epochs": epochs, "repeats": repeats, "results": results}


def summary(measured: dict) -> dict:
    """Median epochs/s of each, and the median of the per-repetition ratios."""
    epochs, results = measured["epochs"], measured["results"]
    rate = {name: statistics.median(epochs / r["seconds"] for r in runs) for name, runs in results.items()}
    pipe = results["pipe custom loop"]
    ratios = {
        name: statistics.median(r["seconds"] / p["seconds"] for p, r in zip(pipe, runs))
        for name, runs in results.items() if name not in ("pipe custom loop", "pipe fused")
    }
    # CPU time (process_time: all of the process's threads) is what a busy machine disturbs least.
    cpu_rate = {name: statistics.median(epochs / r["cpu"] for r in runs) for name, runs in results.items()}
    cpu_ratios = {
        name: statistics.median(r["cpu"] / p["cpu"] for p, r in zip(pipe, runs))
        for name, runs in results.items() if name not in ("pipe custom loop", "pipe fused")
    }
    whole = statistics.median(p["whole"] for p in pipe)
    fused_over_eager = statistics.median(
        e["seconds"] / f["seconds"] for f, e in zip(results["pipe fused"], results["seed eager"])
    ) if "seed eager" in results else None
    return {"epochs": epochs, "pipe_fused_over_eager": fused_over_eager, "epochs_per_second": rate, "pipe_over": ratios, "pipe_whole_run_seconds": whole,
            "epochs_per_cpu_second": cpu_rate, "pipe_over_cpu": cpu_ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-eager", action="store_true", help="skip the (slow) eager loop")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    result = summary(measure(args.epochs, args.repeats, eager=not args.no_eager))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.epochs} epochs, median of {args.repeats} alternating repetitions")
    for name, rate in result["epochs_per_second"].items():
        print(f"  {name:<18} {rate:8.0f} epochs/s")
    for name, ratio in result["pipe_over"].items():
        print(f"  pipe / {name}: {ratio:.2f}x the epochs/s, {result['pipe_over_cpu'][name]:.2f}x the epochs per CPU second")


if __name__ == "__main__":
    main()
