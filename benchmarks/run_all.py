"""pipe against hand-written programs on every job size; writes BENCHMARKS.md.

    python benchmarks/run_all.py                       # print the results
    python benchmarks/run_all.py --write BENCHMARKS.md # and record them with the machine
    python benchmarks/run_all.py --only startup --repeats 3

Every comparison alternates its programs (ABAB, the order reversed every repetition) so
load from other processes hits all alike, and reports the median of >= 5 repetitions and
the median of the per-repetition ratios. Whole processes are measured with `os.wait4`:
wall time, CPU time (user + system) and peak resident memory of the process.

(a) fashion:  `pipe run specs/fashion_mnist.yaml` (3 epochs) vs the same program by hand
(b) linear:   the seed's linear regression, 10 and 2,000 epochs: pipe's custom loop vs the
              seed's tf.function loop and its eager loop (in one process)
(c, d) startup: `pipe validate specs/*.yaml`, `pipe run specs/linear_regression.yaml`,
              each against `python -c "import tensorflow"`
(e) memory:   peak memory of the (a) processes
(f) spe:      `train.steps_per_execution` 1 against `auto` on small steps, fit and custom loop

benchmarks/run_overhead.py breaks one pipe run down by phase (data, fit, results, ...)
against the hand-written one, and benchmarks/data_pipeline.py compares input pipelines
alone: the tools to find where a ratio above 1 comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# `python -m runner.cli` is the `pipe` command (the same entry point), run from this checkout.
PIPE = [PYTHON, "-m", "runner.cli"]


def _measured(command: list[str], cwd: Path) -> dict:
    """Wall, CPU and peak memory of one whole process (which must succeed), from os.wait4."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{err.read().decode()[-3000:]}")
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
                "stdout": out.read().decode()}


def alternate(programs: dict, repeats: int, label: str) -> dict:
    """Run every program `repeats` times, alternating; the order reverses every repetition."""
    results = {name: [] for name in programs}
    for repeat in range(repeats):
        order = list(programs) if repeat % 2 == 0 else list(programs)[::-1]
        for name in order:
            results[name].append(programs[name]())
        line = ", ".join(f"{n} {results[n][-1]['wall']:.2f} s" for n in programs)
        print(f"  {label} {repeat + 1}/{repeats}: {line}", file=sys.stderr, flush=True)
    return results


def median(values) -> float:
    return statistics.median(list(values))


def paired(results: dict, name: str, against: str, key: str) -> float:
    """The median over repetitions of name/against for one measure."""
    return median(a[key] / b[key] for a, b in zip(results[name], results[against]))


# ---------------------------------------------------------------- (a) + (e) Fashion-MNIST


def fashion(repeats: int, epochs: int, work: Path) -> dict:
    spec = REPO / "specs" / "fashion_mnist.yaml"
    counter = iter(range(10**6))

    def pipe(*sets):
        def go():
            epochs_file = work / f"epochs-{next(counter)}.json"
            result = _measured([PYTHON, str(REPO / "benchmarks" / "timed_run.py"), "pipe", str(epochs_file), "--",
                                "run", str(spec), "--quiet", "--set", f"train.epochs={epochs}",
                                "--set", f"outputs.dir={work / 'runs'}", *sets], work)
            result["epochs"] = json.loads(epochs_file.read_text())
            return result
        return go

    def hand():
        epochs_file = work / f"epochs-{next(counter)}.json"
        result = _measured([PYTHON, str(REPO / "benchmarks" / "timed_run.py"), "hand", str(epochs_file), "--",
                            "fashion_mnist", "--epochs", str(epochs), "--out", str(work / f"hand-{next(counter)}")], work)
        result["epochs"] = json.loads(epochs_file.read_text())
        return result

    # "pipe": identical settings (tf.data and Keras fit, as by hand); "pipe, fused": the spec
    # as shipped (`engine: auto` holds the data in memory and fuses whole epochs).
    programs = {"pipe": pipe("--set", "train.engine=keras", "--set", "device.jit_compile=false"), "hand-written": hand,
                "pipe, fused": pipe()}
    results = alternate(programs, repeats, "fashion-mnist")
    for runs in results.values():
        for r in runs:  # the steady epoch: after the first, which traces the step functions
            r["epoch"] = median(r["epochs"][1:] or r["epochs"]) if r["epochs"] else float("nan")
    row = {}
    for name, runs in results.items():
        row[name] = {k: median(r[k] for r in runs) for k in ("wall", "cpu", "rss_mb", "epoch")}
    ratios = {name: {k: paired(results, name, "hand-written", k) for k in ("wall", "cpu", "rss_mb", "epoch")}
              for name in ("pipe", "pipe, fused")}
    return {"epochs": epochs, "repeats": repeats, "median": row, "ratio": ratios["pipe"],
            "ratio_fused": ratios["pipe, fused"]}


# ---------------------------------------------------------------- (b) linear regression


def linear(repeats: int, epochs_list: list[int], work: Path) -> dict:
    found = {}
    for epochs in epochs_list:
        print(f"  linear regression, {epochs} epochs, {repeats} repetitions (one process)", file=sys.stderr, flush=True)
        command = [PYTHON, str(REPO / "benchmarks" / "linear_regression.py"), "--epochs", str(epochs),
                   "--repeats", str(repeats), "--json"]
        found[epochs] = json.loads(_measured(command, work)["stdout"].strip().splitlines()[-1])
    return found


# ---------------------------------------------------------------- (c) + (d) start-up


def startup(repeats: int, work: Path) -> dict:
    specs = sorted(str(p) for p in (REPO / "specs").glob("*.yaml"))
    pipe = PIPE
    programs = {
        "import tensorflow": lambda: _measured([PYTHON, "-c", "import tensorflow"], work),
        "pipe validate specs/*.yaml": lambda: _measured([*pipe, "validate", *specs], work),
        "pipe run linear_regression": lambda: _measured(
            [*pipe, "run", str(REPO / "specs" / "linear_regression.yaml"), "--quiet",
             "--set", f"outputs.dir={work / 'runs'}"], work),
    }
    results = alternate(programs, repeats, "start-up")
    row = {name: {k: median(r[k] for r in runs) for k in ("wall", "cpu")} for name, runs in results.items()}

    def beyond(name, key):
        return median(a[key] - b[key] for a, b in zip(results[name], results["import tensorflow"]))

    return {
        "repeats": repeats, "median": row,
        "validate_over_import": paired(results, "pipe validate specs/*.yaml", "import tensorflow", "wall"),
        "run_beyond_import": {"wall": beyond("pipe run linear_regression", "wall"),
                              "cpu": beyond("pipe run linear_regression", "cpu")},
    }


# ---------------------------------------------------------------- (f) steps per execution


def steps_per_execution(repeats: int, work: Path, epochs: int = 100) -> dict:
    """Steady epoch of specs/keras_regression.yaml (7 small steps an epoch), 1 step per graph
    call against `auto` (the whole epoch), with fit and with the custom loop."""
    spec = REPO / "specs" / "keras_regression.yaml"
    counter = iter(range(10**6))

    def run(loop, per_call):
        def go():
            epochs_file = work / f"spe-{next(counter)}.json"
            result = _measured([PYTHON, str(REPO / "benchmarks" / "timed_run.py"), "pipe", str(epochs_file), "--",
                                "run", str(spec), "--quiet", "--set", f"train.epochs={epochs}",
                                "--set", f"train.loop={loop}", "--set", f"train.steps_per_execution={per_call}",
                                "--set", "outputs.plots.enabled=false", "--set", f"outputs.dir={work / 'runs'}"], work)
            result["epoch"] = median(json.loads(epochs_file.read_text())[1:])
            return result
        return go

    programs = {f"{loop} {per_call}": run(loop, per_call) for loop in ("fit", "custom") for per_call in ("1", "auto")}
    results = alternate(programs, repeats, "steps_per_execution")
    return {
        "repeats": repeats, "epochs": epochs,
        "epoch_ms": {name: median(r["epoch"] for r in runs) * 1e3 for name, runs in results.items()},
        "auto_over_1": {loop: paired(results, f"{loop} auto", f"{loop} 1", "epoch") for loop in ("fit", "custom")},
    }


# ---------------------------------------------------------------- the report


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    versions = subprocess.run([PYTHON, "-c", "import tensorflow as tf, keras, numpy; "
                               "print(tf.__version__, keras.__version__, numpy.__version__)"],
                              capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    tf_version, keras_version, numpy_version = (versions.stdout.split() + ["?"] * 3)[:3]
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf_version, "keras": keras_version, "numpy": numpy_version,
            "os": platform.platform(), "load": os.getloadavg()}


def targets(found: dict) -> list[str]:
    """The goals pipe is held to, each with its measured figure and whether it is met."""
    rows = []

    def row(goal, figure, met):
        rows.append(f"| {goal} | {figure} | {'yes' if met else '**no**'} |")

    if "fashion" in found:
        r = found["fashion"]["ratio"]
        row("Fashion-MNIST whole run, pipe / hand-written CPU time <= 1.02", f"{r['cpu']:.3f}", r["cpu"] <= 1.02)
        row("Fashion-MNIST peak memory, pipe / hand-written <= 1.05", f"{r['rss_mb']:.3f}", r["rss_mb"] <= 1.05)
        q = found["fashion"]["ratio_fused"]
        row("Fashion-MNIST as shipped (fused), CPU time / hand-written <= 0.7", f"{q['cpu']:.3f}", q["cpu"] <= 0.7)
        row("Fashion-MNIST as shipped (fused), peak memory / hand-written <= 1.05", f"{q['rss_mb']:.3f}",
            q["rss_mb"] <= 1.05)
    if "linear" in found:
        s = found["linear"].get("2000") or found["linear"].get(2000)
        if s:
            wall = s["pipe_over"]["seed tf.function"]
            cpu = s.get("pipe_over_cpu", {}).get("seed tf.function")
            figure = f"{wall:.2f}x wall" + (f", {cpu:.2f}x CPU" if cpu is not None else "")
            row("Linear regression 2,000 epochs, custom loop (default checkpoints, no report) >= 1.0x the "
                "seed's tf.function loop", figure, wall >= 1.0)
            fused = s["pipe_fused_over_eager"]
            row("Linear regression 2,000 epochs, multi-epoch graph (fused engine) >= 6x the seed's eager loop",
                f"{fused:.2f}x wall", fused >= 6.0)
    if "startup" in found:
        beyond = found["startup"]["run_beyond_import"]
        row("`pipe run specs/linear_regression.yaml` <= `import tensorflow` + 0.7 s (wall)",
            f"+{beyond['wall']:.2f} s wall, +{beyond['cpu']:.2f} s CPU", beyond["wall"] <= 0.7)
    if not rows:
        return []
    return ["## Targets", "", "| goal | measured | met |", "| --- | --- | --- |", *rows, ""]


def _fashion_section(found: dict) -> list[str]:
    """The Markdown lines of (a) Fashion-MNIST."""
    lines = []
    f = found["fashion"]
    m, r = f["median"], f["ratio"]
    lines += [f"## (a) Fashion-MNIST, the seed's model, {f['epochs']} epochs, whole processes", "",
              f"`pipe run specs/fashion_mnist.yaml` against benchmarks/hand_written.py (tf.data + Keras fit "
              f"with the test split as validation + evaluate + model.keras); median of {f['repeats']} alternating "
              f"runs; ratio = median of the per-run pipe/hand-written ratios.{_load(f)}", "",
              "| | wall s | CPU s | peak memory MB | steady epoch s |", "| --- | --- | --- | --- | --- |"]
    for name in ("pipe", "pipe, fused", "hand-written"):
        v = m[name]
        lines.append(f"| {name} | {v['wall']:.2f} | {v['cpu']:.2f} | {v['rss_mb']:.0f} | {v['epoch']:.2f} |")
    q = f["ratio_fused"]
    lines += [f"| **pipe / hand-written** | **{r['wall']:.3f}** | **{r['cpu']:.3f}** | **{r['rss_mb']:.3f}** "
              f"| **{r['epoch']:.3f}** |",
              f"| **pipe, fused / hand-written** | **{q['wall']:.3f}** | **{q['cpu']:.3f}** | "
              f"**{q['rss_mb']:.3f}** | **{q['epoch']:.3f}** |", "",
              "`pipe` is the identical program: `--set train.engine=keras --set device.jit_compile=false` "
              "(tf.data and Keras fit, as by hand). "
              "It writes what the hand-written program writes (model.keras, history) plus the spec, the "
              "manifest (with the SHA-256 of the four data files), a final checkpoint, history.png and "
              "confusion_matrix.png (one prediction pass over the test set, no second evaluation: the test split "
              "is the validation split, so its metrics are the last epoch's). `pipe, fused` is the spec as "
              "shipped (`train.engine: auto`: the splits in memory, whole epochs per graph call, each epoch's "
              "loop over its full batches compiled with XLA; see docs/guides/training.md, The fused engine).", ""]
    return lines


def _linear_section(found: dict) -> list[str]:
    """The Markdown lines of (b) linear regression."""
    lines = []
    lines += ["## (b) The seed's linear regression (201 points, full batch, SGD 0.1)", "",
              "In one process, alternating: `run_spec(specs/linear_regression.yaml)` with default "
              "checkpointing and no report lines (its training loop timed), the same with "
              "`train.engine=fused` (several epochs per graph call), the seed's loop with the step "
              "under `tf.function`, the seed's eager loop; first epoch (tracing) included.", "",
              "| epochs | pipe custom loop epochs/s | pipe fused epochs/s | seed tf.function epochs/s "
              "| seed eager epochs/s | pipe / tf.function | pipe / eager | pipe fused / eager | pipe whole run s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for epochs, s in found["linear"].items():
        rate, over = s["epochs_per_second"], s["pipe_over"]
        lines.append(f"| {epochs} | {rate['pipe custom loop']:.0f} | {rate['pipe fused']:.0f} | "
                     f"{rate['seed tf.function']:.0f} | {rate.get('seed eager', float('nan')):.0f} | "
                     f"**{over['seed tf.function']:.2f}x** | {over.get('seed eager', float('nan')):.2f}x | "
                     f"**{s['pipe_fused_over_eager']:.2f}x** | {s['pipe_whole_run_seconds']:.2f} |")
    lines += ["", "The same runs in epochs per CPU second (`time.process_time`, all threads of the process), "
              "which a busy machine disturbs less than wall time:", "",
              "| epochs | pipe custom loop | seed tf.function | seed eager | pipe / tf.function | pipe / eager |",
              "| --- | --- | --- | --- | --- | --- |"]
    for epochs, s in found["linear"].items():
        rate, over = s.get("epochs_per_cpu_second"), s.get("pipe_over_cpu")
        if rate:
            lines.append(f"| {epochs} | {rate['pipe custom loop']:.0f} | {rate['seed tf.function']:.0f} | "
                         f"{rate.get('seed eager', float('nan')):.0f} | **{over['seed tf.function']:.2f}x** | "
                         f"{over.get('seed eager', float('nan')):.2f}x |")
    lines.append("")
    return lines


def _startup_section(found: dict) -> list[str]:
    """The Markdown lines of (c, d) start-up."""
    lines = []
    s = found["startup"]
    lines += ["## (c) `pipe validate`, (d) `pipe run` start-up, against `import tensorflow`", "",
              f"Whole processes, median of {s['repeats']} alternating runs.", "",
              "| process | wall s | CPU s |", "| --- | --- | --- |"]
    for name, v in s["median"].items():
        lines.append(f"| `{name}` | {v['wall']:.2f} | {v['cpu']:.2f} |")
    beyond = s["run_beyond_import"]
    lines += ["", f"- `pipe validate specs/*.yaml` / `import tensorflow`: **{s['validate_over_import']:.3f}** "
              "of the wall time.",
              f"- `pipe run specs/linear_regression.yaml --quiet` beyond `import tensorflow`: "
              f"**{beyond['wall']:+.2f} s wall**, {beyond['cpu']:+.2f} s CPU (median of the per-run "
              "differences; the whole job: devices, data, model, 10 epochs, SavedModel, 3 plots, manifest). "
              "Both are whole processes as a user meets them: `python -c \"import tensorflow\"` also pays the "
              "interpreter's teardown of TensorFlow (about 0.8 s here), which `pipe` skips once everything is "
              "written (docs/performance.md, Speed), so this difference is smaller than pipe's own work after the import: "
              "timed in one process on a quiet moment, loading the spec took 0.05 s and `run_spec` 0.64-0.70 s "
              "(training 0.18 s, the SavedModel 0.08 s, three plots 0.24 s).", ""]
    return lines


def _spe_section(found: dict) -> list[str]:
    """The Markdown lines of (f) steps per execution."""
    lines = []
    s = found["spe"]
    lines += ["## (f) `train.steps_per_execution` on small steps", "",
              f"`specs/keras_regression.yaml` (7 steps of 32 examples an epoch), {s['epochs']} epochs, whole "
              f"processes, steady epoch (median after the first), median of {s['repeats']} alternating runs.", "",
              "| loop | 1 step per call, ms/epoch | `auto` (the epoch per call), ms/epoch | auto / 1 |",
              "| --- | --- | --- | --- |"]
    for loop in ("fit", "custom"):
        lines.append(f"| {loop} | {s['epoch_ms'][f'{loop} 1']:.2f} | {s['epoch_ms'][f'{loop} auto']:.2f} | "
                     f"{s['auto_over_1'][loop]:.3f} |")
    lines.append("")
    return lines


def _load(section: dict) -> str:
    """When a section was measured apart from the others: the load average around it."""
    load = section.get("load")
    return f" Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end." if load else ""


def _fashion_section_memory(found: dict) -> list[str]:
    """The Markdown lines of (e) peak memory."""
    m, f = found["fashion"]["median"], found["fashion"]
    lines = ["## (e) Peak memory", "",
             f"Fashion-MNIST whole run (peak resident memory, `ru_maxrss`, of the (a) processes): "
             f"pipe {m['pipe']['rss_mb']:.0f} MB, hand-written {m['hand-written']['rss_mb']:.0f} MB: "
             f"**{f['ratio']['rss_mb']:.3f}x**; the spec as shipped (fused) {m['pipe, fused']['rss_mb']:.0f} MB: "
             f"**{f['ratio_fused']['rss_mb']:.3f}x**. The fused engine holds the splits as the IDX files give them "
             "(uint8 pixels: 52 MB for train and test, where the hand-written program caches 188 MB of float32) "
             "and casts and scales each batch inside the compiled step; every dataset made from an in-memory "
             "source shares one tensor of its arrays.", ""]
    return lines


def markdown(found: dict, info: dict, command: str) -> str:
    lines = ["# Benchmarks", "",
             "pipe against the same programs written by hand. Regenerate with:", "",
             "```sh", command, "```", "",
             f"Machine: {info['cpu']}, {info['cores']} cores; {info['os']}; Python {info['python']}, "
             f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, NumPy {info['numpy']}. "
             f"Load average at the start {info['load'][0]:.1f}, at the end {info['end_load'][0]:.1f} "
             f"(the machine was {'shared and busy' if info['load'][0] > 1 else 'quiet'}: read the ratios, "
             "which come from alternating runs, rather than the absolute times). Sections re-measured "
             "with `--only` replace their own figures and keep the others; `BENCHMARKS.json` holds the raw "
             "figures.", ""]
    lines += targets(found)
    if "fashion" in found:
        lines += _fashion_section(found)
    if "linear" in found:
        lines += _linear_section(found)
    if "startup" in found:
        lines += _startup_section(found)
    if "spe" in found:
        lines += _spe_section(found)
    if "fashion" in found:
        lines += _fashion_section_memory(found)
    return "\n".join(lines)


def command_line(args) -> str:
    """The command that regenerates every section: the full suite, writing the same file."""
    write = f" --write {args.write.name if args.write and args.write.parent.resolve() == REPO else args.write}" \
        if args.write else ""
    return f"python benchmarks/run_all.py --repeats {args.repeats}{write}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="Fashion-MNIST epochs")
    parser.add_argument("--only", nargs="*", choices=["fashion", "linear", "startup", "spe"],
                        default=["startup", "linear", "spe", "fashion"])
    parser.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rewrite --write from the results stored beside it")
    args = parser.parse_args()
    if args.render:
        stored = json.loads(args.write.with_suffix(".json").read_text())
        args.write.write_text(markdown(stored["found"], stored["info"], stored.get("command") or command_line(args))
                              .rstrip("\n") + "\n" + _other_sections(args.write))
        return

    info = machine()
    work = Path(tempfile.mkdtemp(prefix="pipe-bench-"))
    found = {}
    try:
        if "startup" in args.only:
            found["startup"] = startup(args.repeats, work)
        if "linear" in args.only:
            found["linear"] = linear(args.repeats, [10, 2000], work)
        if "spe" in args.only:
            found["spe"] = steps_per_execution(max(3, args.repeats // 2 + 1), work)
        if "fashion" in args.only:
            load = os.getloadavg()[0]
            found["fashion"] = fashion(args.repeats, args.epochs, work)
            found["fashion"]["load"] = [load, os.getloadavg()[0]]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["end_load"] = os.getloadavg()
    command = command_line(args)
    if args.write:
        # Sections not re-run this time keep their last results (kept beside the Markdown).
        stored = args.write.with_suffix(".json")
        earlier = json.loads(stored.read_text()) if stored.is_file() else {}
        if set(args.only) != {"fashion", "linear", "startup", "spe"}:
            found = {**earlier.get("found", {}), **found}
            info = earlier.get("info", info)  # the machine's load then; each section re-run records its own
            command = earlier.get("command", command)  # what regenerates every section
        stored.write_text(json.dumps({"found": found, "info": info, "command": command},
                                     indent=1, default=str) + "\n")
    text = markdown(found, info, command)
    print(text)
    print(json.dumps(found, default=str), file=sys.stderr)
    if args.write:
        args.write.write_text(text.rstrip("\n") + "\n" + _other_sections(args.write))


def _other_sections(path: Path) -> str:
    """Sections other scripts write into the file (export_latency.py's (g)), kept as they are."""
    old = path.read_text() if path.is_file() else ""
    start = old.find("\n## (g) ")
    return "\n" + old[start + 1:].rstrip("\n") + "\n" if start >= 0 else ""


if __name__ == "__main__":
    main()
