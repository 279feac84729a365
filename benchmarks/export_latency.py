"""Size, latency and accuracy of each export format of the Fashion-MNIST model.

Trains specs/fashion_mnist.yaml (or uses --run), exports it as a SavedModel, a LiteRT model
(float, float16, int8) and an ONNX model, then times each on raw test images (uint8, the
preprocessing inside the graph) at batch 1 and batch 256, in alternating repetitions, and
measures its accuracy on the full test set. Also times the exported SavedModel on a batch
of 256 raw images against the Keras model's `predict_on_batch` on the same batch already
preprocessed (the cost of preprocessing inside the graph).

    python benchmarks/export_latency.py [--run RUN_DIR] [--repeats 7] [--write BENCHMARKS.md]

Needs the extras: pip install 'pipe[tflite,onnx]'.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")
SECTION = "## (g) Exported models: size, latency, accuracy"


def _test_set():
    images = np.frombuffer(gzip.decompress((FASHION / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8,
                           offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer(gzip.decompress((FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8,
                           offset=8).astype(np.int64)
    return images, labels


def _train(folder: Path) -> Path:
    from runner.run.pipeline import run_spec
    from runner.spec import load_spec

    spec = load_spec(REPO / "specs" / "fashion_mnist.yaml", [f"outputs.dir={folder}", "outputs.plots.enabled=false"])
    return run_spec(spec, quiet=True).run_dir


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


class SavedModel:
    def __init__(self, path):
        import tensorflow as tf

        self.tf = tf
        self.serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    def __call__(self, images):
        return self.serve(images=self.tf.constant(images))["class"].numpy()


class LiteRT:
    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        self.path, self.size, self.interpreter = str(path), None, None
        self.Interpreter = Interpreter

    def __call__(self, images):
        if self.size != len(images):  # one interpreter per batch size, allocated once
            self.interpreter = self.Interpreter(model_path=self.path)
            index = self.interpreter.get_signature_runner().get_input_details()["images"]["index"]
            self.interpreter.resize_tensor_input(index, list(images.shape))
            self.interpreter.allocate_tensors()
            self.runner, self.size = self.interpreter.get_signature_runner(), len(images)
        return self.runner(images=images)["class"]


class OnnxRuntime:
    def __init__(self, path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, images):
        return self.session.run(["class"], {"images": images})[0]


def _time(function, x, calls: int) -> float:
    """Median seconds per call over `calls` calls (after one warm-up call)."""
    function(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _alternating(functions: dict, calls: int) -> dict:
    """{name: (median wall seconds, median CPU seconds, fastest wall seconds) per call} over
    `calls` rounds, each round calling every function once. CPU time (the process's, every
    thread's) is the work done: on a shared machine a call's wall time also counts its waits for
    a free core."""
    for function in functions.values():
        function()
    wall, cpu = {name: [] for name in functions}, {name: [] for name in functions}
    for _ in range(calls):
        for name, function in functions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), min(wall[name]))
            for name in functions}


def _accuracy(function, images, labels, batch=256) -> float:
    predicted = np.concatenate([np.asarray(function(images[i:i + batch])).reshape(-1)
                                for i in range(0, len(images), batch)])
    return float((predicted == labels).mean())


def measure(run: Path, repeats: int) -> dict:
    from runner.export.write import export_run

    images, labels = _test_set()
    out = Path(tempfile.mkdtemp(prefix="pipe-export-bench-"))
    files = {
        "SavedModel": (export_run(run, "saved_model", output=out / "saved_model").path, SavedModel),
        "SavedModel --jit-compile": (export_run(run, "saved_model", output=out / "saved_model_xla",
                                                jit_compile=True).path, SavedModel),
        "LiteRT float32": (export_run(run, "tflite", output=out / "model.tflite").path, LiteRT),
        "LiteRT float16": (export_run(run, "tflite", output=out / "f16.tflite", quantize="float16").path, LiteRT),
        "LiteRT int8": (export_run(run, "tflite", output=out / "int8.tflite", quantize="int8").path, LiteRT),
        "ONNX": (export_run(run, "onnx", output=out / "model.onnx").path, OnnxRuntime),
    }
    batch = images[:256]
    # First, while no other runtime has run in this process (ONNX Runtime's threads spin on
    # after a call, taking a core from TensorFlow's)
    result = _preprocessing_cost(run, {name: files[name][0] for name in ("SavedModel", "SavedModel --jit-compile")},
                                 batch, repeats)
    runners = {name: kind(path) for name, (path, kind) in files.items()}
    one = images[:1]
    per_one = {name: [] for name in runners}
    per_batch = {name: [] for name in runners}
    for _ in range(repeats):  # alternating: machine load hits every format alike
        for name, function in runners.items():
            per_one[name].append(_time(function, one, 50))
            per_batch[name].append(_time(function, batch, 5))
    rows = {}
    for name, function in runners.items():
        rows[name] = {"bytes": _size(files[name][0]), "batch1_ms": statistics.median(per_one[name]) * 1e3,
                      "batch256_us_per_example": statistics.median(per_batch[name]) / 256 * 1e6,
                      "accuracy": _accuracy(function, images, labels)}
    return {**result, "rows": rows, "repeats": repeats}


def _preprocessing_cost(run: Path, saved_models: dict, batch, repeats: int) -> dict:
    """Each SavedModel's `serving_default` on the raw batch against the Keras model's
    `predict_on_batch` on the same batch already cast and scaled (as the spec's map ops do it).

    Call by call in turn, so that the load of a shared machine falls on each alike; each call's
    outputs fetched as NumPy arrays, as predict_on_batch returns them. Per repetition: the ratio
    of the median calls (wall and CPU time) and of the fastest calls (the least disturbed).
    """
    import keras
    import tensorflow as tf

    load_before = os.getloadavg()[0]
    model = keras.saving.load_model(run / "model.keras")
    preprocessed = tf.constant(batch.astype(np.float32) / np.float32(255.0))
    raw = tf.constant(batch)
    calls = {"keras": lambda: model.predict_on_batch(preprocessed)}
    # The model alone in TensorFlow's graph runtime, as the plain SavedModel runs it (no XLA):
    # what is left of the ratio beyond the runtime is the preprocessing and outputs in the graph
    graph = tf.function(lambda x: model(x, training=False), autograph=False)
    calls["model alone"] = lambda: graph(preprocessed).numpy()
    for name, path in saved_models.items():
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        calls[name] = (lambda serve: lambda: {k: v.numpy() for k, v in serve(images=raw).items()})(serve)
    measures = ("wall", "cpu", "fastest")
    times = {m: {name: [] for name in calls} for m in measures}
    for _ in range(repeats):
        for name, each in _alternating(calls, 40).items():
            for m, seconds in zip(measures, each):
                times[m][name].append(seconds)
    ratios = {m: {name: [t / k for t, k in zip(times[m][name], times[m]["keras"])] for name in calls
                  if name != "keras"} for m in measures}
    return {"times_ms": {m: {name: statistics.median(v) * 1e3 for name, v in times[m].items()} for m in measures},
            "ratios": {m: {name: (statistics.median(v), min(v), max(v)) for name, v in ratios[m].items()}
                       for m in measures},
            "load": (load_before, os.getloadavg()[0])}


def markdown(result: dict) -> str:
    import tensorflow as tf

    lines = [SECTION, "",
             "`python benchmarks/export_latency.py --repeats {repeats}`: specs/fashion_mnist.yaml trained as shipped "
             "(3 epochs), exported by `pipe export` in each format; each format run by its own runtime "
             "(tf.saved_model.load's `serving_default`, LiteRT's interpreter, onnxruntime on the CPU) on raw "
             "uint8 test images, the preprocessing inside the graph. Latency: median over {repeats} alternating "
             "repetitions of the median call (50 calls at batch 1, 5 at batch 256). Accuracy: the 10,000 "
             "test images. TensorFlow {tf}; Python {py}; {cores} cores.".format(
                 repeats=result["repeats"], tf=tf.__version__, py=platform.python_version(),
                 cores=os.cpu_count()), "",
             "| format | size KB | batch 1 ms | batch 256 us/example | test accuracy |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['bytes'] / 1024:.0f} | {row['batch1_ms']:.3f} | "
                     f"{row['batch256_us_per_example']:.2f} | {row['accuracy']:.4f} |")
    lines += ["", "Preprocessing inside the graph against none: each exported SavedModel's `serving_default` on 256 "
                  "raw images, against the Keras model's `predict_on_batch` (Keras 3 compiles it with XLA) on the "
                  "same 256 images already cast and scaled, outputs fetched as NumPy arrays; measured first, "
                  f"{result['repeats']} repetitions of 40 rounds calling each in turn. Per repetition, the ratio of "
                  "the median calls' wall time, of their CPU time (the process's, every thread's: the work, "
                  "without the waits for a free core), and of the fastest calls' wall time (the least disturbed); "
                  "the median ratio over the repetitions, and their range. Target: <= 1.1. Load average (1 minute) "
                  f"{result['load'][0]:.1f} at the start, {result['load'][1]:.1f} at the end, on {os.cpu_count()} "
                  "cores.", "",
              "| | median call, wall ms | / Keras | median call, CPU ms | / Keras | fastest call, ms | / Keras |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    times, ratios = result["times_ms"], result["ratios"]
    lines.append("| Keras `predict_on_batch`, preprocessed | " + " | ".join(
        f"{times[m]['keras']:.3f} | 1" for m in ("wall", "cpu", "fastest")) + " |")
    labels = {"model alone": "the Keras model as a tf.function without XLA, preprocessed"}
    for name in ratios["wall"]:
        cells = []
        for m in ("wall", "cpu", "fastest"):
            ratio, low, high = ratios[m][name]
            cells.append(f"{times[m][name]:.3f} | **{ratio:.3f}** ({low:.3f} – {high:.3f}; "
                         f"{'met' if ratio <= 1.1 else 'not met'})")
        lines.append(f"| {labels.get(name, name + ', raw')} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def write(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="A completed Fashion-MNIST run (default: train one now).")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", type=Path, help="Replace this section of the file (e.g. BENCHMARKS.md).")
    args = parser.parse_args()
    run = args.run or _train(Path(tempfile.mkdtemp(prefix="pipe-export-bench-runs-")))
    section = markdown(measure(run, args.repeats))
    print(section)
    if args.write:
        write(args.write, section)


if __name__ == "__main__":
    main()
