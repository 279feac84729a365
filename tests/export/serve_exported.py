"""Runs an exported model without pipe: `python serve_exported.py FORMAT PATH INPUTS.npz OUT.npz`.

Loads the SavedModel with tf.saved_model.load, the TFLite file with LiteRT's interpreter, the
ONNX file with onnxruntime; feeds the named arrays of INPUTS.npz; writes the named outputs.
Never imports `runner` (the test checks sys.modules).
"""

import sys

import numpy as np


def main(fmt, path, inputs_path, out_path):
    with np.load(inputs_path, allow_pickle=False) as archive:
        inputs = {k: archive[k] for k in archive.files}
    inputs = {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in inputs.items()}
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        outputs = {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        again = {k: v.numpy() for k, v in serve(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    elif fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=path)
        indices = {n: d["index"] for n, d in
                   interpreter.get_signature_runner("serving_default").get_input_details().items()}
        count = len(next(iter(inputs.values())))
        for name, index in indices.items():
            interpreter.resize_tensor_input(index, [count, *inputs[name].shape[1:]])
        interpreter.allocate_tensors()
        runner = interpreter.get_signature_runner("serving_default")
        outputs = {k: np.asarray(v).copy() for k, v in runner(**inputs).items()}
        again = {k: np.asarray(v).copy() for k, v in runner(**inputs).items()}
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        feed = {i.name: inputs[i.name.split(":")[0]] for i in session.get_inputs()}
        outputs = dict(zip(names, session.run(names, feed)))
        again = dict(zip(names, session.run(names, feed)))
    assert "runner" not in sys.modules, "the exported model was run with pipe imported"
    same = all(np.array_equal(outputs[k], again[k]) for k in outputs)
    np.savez(out_path, **{k: _text(np.asarray(v)) if np.asarray(v).dtype.kind in "OSU" else v
                          for k, v in outputs.items()}, __deterministic__=np.array(same))


def _text(values):
    """Text outputs as str: the runtimes return UTF-8 bytes."""
    return np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[str])(values)


if __name__ == "__main__":
    main(*sys.argv[1:5])
