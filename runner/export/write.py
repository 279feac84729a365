"""`pipe export` and `outputs.export`: a finished run's model, with its preprocessing, for serving.

Three formats, one serving function (`runner.export.serving`): raw inputs in, named outputs out.

- `saved_model`: `tf.saved_model.save` of a module holding the model and the serving
  function, as the `serving_default` signature (and `__call__`) — what TF Serving loads.
- `tflite`: TensorFlow's LiteRT converter on that function, the model's variables frozen to
  constants (builtin ops only, so the plain LiteRT runtime runs it); `--quantize float16`
  halves the weights, `int8` quantizes weights and activations, calibrated on raw train
  examples.
- `onnx`: tf2onnx on the same function (opset 17), outputs named as the signature's.

Each written file is run once in its own runtime before it replaces the target.
Everything is read from the run directory (spec.yaml, preprocessing.json, the model file
loaded in Keras's safe mode); a run that did not complete is refused.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.errors import PipeError
from runner.export.paths import (ExportRefused, ExportUsage, default_path, output_path,
                                 request_problem, writable_parent)
from runner.outputs.files import write_json
from runner.outputs.manifest import fingerprint
from runner.outputs.records import read_run
from runner.spec.sections import section

REPRESENTATIVE = 200  # raw train examples calibrating an int8 model
_EXTRAS = {"tflite": (("ai_edge_litert",), "tflite"), "onnx": (("tf2onnx", "onnxruntime"), "onnx")}
_ONNX_OPSET = 17


class ExportFailed(PipeError, RuntimeError):
    """An unexpected error while exporting: what was being done, then the error, one paragraph."""

    def __init__(self, doing: str, error: BaseException):
        from runner.outputs.failure import summarise_error

        super().__init__(f"{doing} failed: {summarise_error(error)}")


@contextmanager
def _doing(what: str):
    """Name the step an unexpected error stopped (refusals and located spec errors pass as they are)."""
    from runner.spec.errors import SpecError

    try:
        yield
    except (ExportRefused, ExportFailed, SpecError, FileNotFoundError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise ExportFailed(what, e) from e


@dataclass
class Exported:
    path: Path
    format: str
    sha256: str
    quantize: str | None = None

    def record(self, run_dir: Path) -> dict:
        path = self.path.resolve()
        inside = path.is_relative_to(Path(run_dir).resolve())
        return {"format": self.format, "path": str(path.relative_to(Path(run_dir).resolve()) if inside else path),
                "sha256": self.sha256, "quantize": self.quantize}


def missing_extra(fmt: str) -> str | None:
    """The one line telling how to install what `fmt` needs, or None when it is installed.

    tflite runs its file with LiteRT's interpreter (the tflite extra), or else with
    TensorFlow's own while TensorFlow still ships it (`_tflite_interpreter`)."""
    modules, extra = _EXTRAS.get(fmt, ((), None))
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent or (fmt == "tflite" and _tensorflow_has_interpreter()):
        return None
    return f"exporting {fmt} needs {', '.join(absent)}: pip install 'pipe[{extra}]'"


def export_run(run_dir, fmt: str, output=None, quantize: str | None = None,
               representative: int = REPRESENTATIVE, jit_compile: bool = False) -> Exported:
    """Export the completed run in `run_dir` as `fmt` to `output` (default: <run>/export/...).

    Raises:
        ExportUsage: an unknown format or quantization, an option of another format, an
            --output whose extension names another format.
        ExportRefused: a run that did not complete, a model file that does not
            load in safe mode, an output path that is taken, inside another run, or not writable.
        FileNotFoundError: not a run directory.
        SpecError: a map op of the run's spec that cannot run inside an exported model.
    """
    run_dir = Path(run_dir)
    problem = request_problem(fmt, quantize, jit_compile, output)
    if problem:
        raise ExportUsage(problem)
    line = missing_extra(fmt)
    if line:
        raise ExportRefused(line)
    record = read_run(run_dir)
    if record.status != "completed":
        from runner.outputs.status import effective_status

        reason = effective_status(record.manifest).reason
        raise ExportRefused(f"{run_dir}: the run is {record.status}" + (f" ({reason})" if reason else "")
                            + "; only a completed run's model is exported")
    target = output_path(run_dir, record.manifest, fmt, output, quantize)
    from runner.outputs.records import load_run_spec

    if not (run_dir / "spec.yaml").is_file():
        raise ExportRefused(f"{run_dir}: the run's spec.yaml is missing; it says how to preprocess raw inputs")
    with _doing("reading the run's spec.yaml"):
        spec = load_run_spec(run_dir)
    _check_model_file(run_dir, record.manifest)
    with writable_parent(target, output if output is not None else target):  # made now, removed if it fails
        model = _load_model(run_dir)
        exported = write_export(spec, run_dir, record.manifest, model, fmt, target, quantize, representative,
                                jit_compile)
    if exported.path.resolve().is_relative_to(run_dir.resolve()):
        _record(run_dir, exported)
    return exported


def check_export_extras(outputs) -> None:
    """A located error for a format in `outputs.export` whose extra is not installed.

    `outputs` is the `OutputsConfig` (the Spec is taken too).
    """
    outputs = section(outputs, "outputs")
    for i, fmt in enumerate(outputs.export):
        line = missing_extra(fmt)
        if line:
            raise outputs.error(("export", i), line, at_value=True)


def export_finished_run(spec, run_dir: Path, manifest: dict, model) -> list[dict]:
    """`outputs.export`: each listed format into <run>/export/, as manifest records."""
    records = []
    for fmt in spec.sections.outputs.export:
        line = missing_extra(fmt)
        if line:
            raise ExportRefused(line)
        exported = write_export(spec, run_dir, manifest, model, fmt, default_path(run_dir, fmt), None, REPRESENTATIVE)
        records.append(exported.record(run_dir))
    return records


def write_export(spec, run_dir, manifest, model, fmt, target: Path, quantize, representative,
                 jit_compile: bool = False) -> Exported:
    """Build the serving function and write it as `fmt` at `target` (replaced atomically)."""
    from runner.export.serving import build_serving

    with _doing("building the serving function (the run's preprocessing and model)"):
        serving = build_serving(spec, run_dir, manifest, model, fmt, jit_compile)
    from runner.export.string_ops import refuse_unheld_string_ops

    refuse_unheld_string_ops(fmt, serving.function, model)  # before a converter fails on them
    if jit_compile and any(i.dtype.name == "string" for i in serving.inputs):
        raise ExportRefused("--jit-compile: XLA cannot compile the text inputs' lookups; export without it")
    with _doing("running the serving function on raw train examples"):
        check = _expected(spec, serving)  # before converting: tf2onnx leaves the function uncallable
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}-{uuid.uuid4().hex}"
    try:
        with _doing(f"converting the model to {fmt}"):
            if fmt == "saved_model":
                _write_saved_model(serving, temp)
            elif fmt == "tflite":
                data = None
                if quantize == "int8":
                    from runner.export.serving import representative_inputs

                    data = representative_inputs(spec, representative, serving.split)
                temp.write_bytes(_tflite_bytes(serving, quantize, data))
            else:
                _write_onnx(serving, temp)
        with _doing(f"checking the written {fmt} file in its runtime"):
            _verify(fmt, temp, quantize, *check)
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(temp, target)
    except BaseException:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        raise
    return Exported(target, fmt, fingerprint(target), quantize)


def model_fingerprint(run_dir: Path) -> dict:
    """{"model_sha256": ...} of the model file a run saved (model.keras or saved_model/), else {}."""
    for name in ("model.keras", "saved_model"):
        if (Path(run_dir) / name).exists():
            return {"model_sha256": fingerprint(Path(run_dir) / name)}
    return {}


def _check_model_file(run_dir: Path, manifest: dict) -> None:
    """The model file must be the one the run saved, when its manifest recorded it."""
    recorded = manifest.get("model_sha256")
    if recorded and model_fingerprint(run_dir).get("model_sha256") not in (None, recorded):
        raise ExportRefused(f"{run_dir}: the saved model is not the file the run wrote (its SHA-256 differs "
                            "from the manifest's model_sha256)")


def _load_model(run_dir: Path):
    """The run's model, Keras's safe mode on: a model file that would run code is refused."""
    from runner.outputs.saving import load_model

    try:
        return load_model(run_dir)
    except FileNotFoundError:
        raise
    except Exception as e:  # a replaced, truncated or code-carrying model file
        from runner.spec.errors import first_line

        raise ExportRefused(f"{run_dir}: the saved model does not load in safe mode: {first_line(e)}") from None


def _write_saved_model(serving, path: Path) -> None:
    import tensorflow as tf

    concrete = serving.function.get_concrete_function()
    serving.holder.serve = serving.function
    serving.holder.__call__ = serving.function  # the reloaded object is callable: loaded(images=...)
    tf.saved_model.save(serving.holder, str(path), signatures={"serving_default": concrete})


def _tflite_bytes(serving, quantize, data) -> bytes:
    import numpy as np
    import tensorflow as tf

    from runner.internals import frozen_function

    # The function with its variables frozen into constants (converted from the SavedModel they
    # stay resource variables that the LiteRT runtime reads uninitialised: NaN), wrapped again
    # to keep the signature's input and output names.
    concrete = serving.function.get_concrete_function()
    names = list(tf.nest.flatten(_key_structure(concrete.structured_outputs)))
    frozen = frozen_function(concrete)
    named = tf.function(lambda *values: dict(zip(names, frozen(*values))),
                        input_signature=serving.function.input_signature, autograph=False)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([named.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        # By input name and in each input's dtype: LiteRT orders a signature's inputs by name,
        # and a table's columns come as float64 or text.
        typed = {i.name: np.asarray(d).astype(object if i.dtype == tf.string else i.dtype.as_numpy_dtype)
                 for i, d in zip(serving.inputs, data)}

        def examples():
            for i in range(len(data[0])):
                yield {name: values[i:i + 1] for name, values in typed.items()}

        converter.representative_dataset = examples
    with _without_interpreter_deprecation():  # the int8 calibration runs TensorFlow's interpreter
        return converter.convert()


def _key_structure(outputs: dict) -> dict:
    """{name: name}: flattened like the outputs, so names line up with the flat tensors."""
    return {k: k for k in outputs}


def _write_onnx(serving, path: Path) -> None:
    import onnx

    from runner.internals import onnx_from_module

    proto = onnx_from_module(serving.holder, serving.function.get_concrete_function(), _ONNX_OPSET)
    onnx.save(proto, str(path))


_CHECKED = 8  # raw train examples each written file is run on before it replaces the target


def _expected(spec, serving) -> tuple:
    """(a few raw train examples by input name, the serving function's outputs for them)."""
    import numpy as np
    import tensorflow as tf

    from runner.export.serving import representative_inputs

    examples = representative_inputs(spec, _CHECKED, serving.split)
    feed = {i.name: np.asarray(v).astype(object if i.dtype == tf.string else i.dtype.as_numpy_dtype)
            for i, v in zip(serving.inputs, examples)}
    outputs = serving.function(*[tf.constant(feed[i.name]) for i in serving.inputs])
    return feed, {k: v.numpy() for k, v in outputs.items()}


def _verify(fmt: str, path: Path, quantize, feed: dict, expected: dict) -> None:
    """Run the written file in its own runtime on a few raw train examples: it must load, give
    the signature's outputs, and (unquantized) the serving function's values.

    Raises:
        RuntimeError: the file does not reproduce the function (a converter changed the model).
    """
    import numpy as np

    got = _run_file(fmt, path, feed)
    if sorted(got) != sorted(expected):
        raise RuntimeError(f"the exported {fmt} model's outputs are {sorted(got)}, not {sorted(expected)}")
    for name, value in expected.items():
        value, found = np.asarray(value), np.asarray(got[name])
        if value.dtype.kind in "OSU":
            value, found = _text(value), _text(found)
        close = np.array_equal(value, found) if value.dtype.kind not in "f" else \
            np.allclose(found, value, rtol=1e-4, atol=1e-5)
        if found.shape != value.shape or (not quantize and not close):
            raise RuntimeError(f"the exported {fmt} model does not reproduce the run's model: its output "
                               f"{name!r} differs on raw train examples")


def _text(values):
    """Text outputs as str: the runtimes return UTF-8 bytes (class names may be any language)."""
    import numpy as np

    decode = np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])
    return decode(values) if values.size else values.astype(object)


def _run_file(fmt: str, path: Path, feed: dict) -> dict:
    """The named outputs of the written file, run by the runtime a server would use."""
    import numpy as np

    if fmt == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in feed.items()}).items()}
    if fmt == "tflite":
        interpreter = _tflite_interpreter(path)
        indices = {n: d["index"] for n, d in interpreter.get_signature_runner().get_input_details().items()}
        for name, index in indices.items():
            interpreter.resize_tensor_input(index, list(feed[name].shape))
        interpreter.allocate_tensors()
        return {k: np.array(v) for k, v in interpreter.get_signature_runner()(**feed).items()}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {i.name: feed[i.name] for i in session.get_inputs()})))


def _tflite_interpreter(path: Path):
    """LiteRT's interpreter of the file (ai_edge_litert, the tflite extra), or TensorFlow's
    own where that is not installed, without its deprecation warning (which asks for LiteRT)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with _without_interpreter_deprecation():
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


def _tensorflow_has_interpreter() -> bool:
    """Whether the installed TensorFlow still ships tf.lite.Interpreter (seen without importing it)."""
    found = importlib.util.find_spec("tensorflow")
    return bool(found and found.origin and (Path(found.origin).parent / "lite" / "python" / "interpreter.py").is_file())


@contextmanager
def _without_interpreter_deprecation():
    """TensorFlow's tf.lite.Interpreter warns that LiteRT replaces it, also when its own
    converter uses it (int8 calibration): not the user's to act on."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        yield


def _record(run_dir: Path, exported: Exported) -> None:
    """List the export in the run's manifest with its SHA-256 (replacing one at the same path)."""
    import json

    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    entry = exported.record(run_dir)
    manifest["exports"] = [e for e in manifest.get("exports") or [] if e.get("path") != entry["path"]] + [entry]
    write_json(path, manifest)
