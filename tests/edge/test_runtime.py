"""edge.runtime: backend selection and one-line errors for missing/corrupt models and bad delegates."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from edge.runtime import BACKENDS, ModelLoadError, available_backends, load_interpreter

HAS_TFLITE_RUNTIME = importlib.util.find_spec("tflite_runtime") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tflite"
    with pytest.raises(ModelLoadError, match="nope.tflite: model file not found") as info:
        load_interpreter(path)
    assert "\n" not in str(info.value)


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelLoadError, match=r"corrupt.tflite: not a valid TFLite model") as info:
        load_interpreter(path)
    assert "\n" not in str(info.value)


def test_truncated_model(tiny_models, tmp_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes(tiny_models["float32"].read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="truncated.tflite"):
        load_interpreter(path)


def test_default_backend_is_the_first_installed_and_runs(tiny_models):
    loaded = load_interpreter(tiny_models["float32"], num_threads=2)
    assert loaded.backend == available_backends()[0]
    assert loaded.backend == "ai_edge_litert"  # installed in .venv, preferred
    interpreter = loaded.interpreter
    (detail,) = interpreter.get_input_details()
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    interpreter.invoke()
    assert all(np.isfinite(interpreter.get_tensor(d["index"])).all() for d in interpreter.get_output_details())


@pytest.mark.skipif(HAS_TFLITE_RUNTIME, reason="tflite_runtime is installed here, so it cannot be skipped over")
def test_backend_falls_through_when_not_installed(tiny_models):
    loaded = load_interpreter(tiny_models["float32"], backends=["tflite_runtime", "ai_edge_litert"])
    assert loaded.backend == "ai_edge_litert"
    with pytest.raises(ModelLoadError, match="no TFLite runtime installed"):
        load_interpreter(tiny_models["float32"], backends=["tflite_runtime"])


@pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed")
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_tensorflow_lite_backend(tiny_models):
    loaded = load_interpreter(tiny_models["int8"], backends=["tensorflow"])
    assert loaded.backend == "tensorflow"
    assert type(loaded.interpreter).__module__.startswith("tensorflow")


def test_unknown_backend(tiny_models):
    with pytest.raises(ValueError, match="expected one of " + ", ".join(BACKENDS)):
        load_interpreter(tiny_models["float32"], backends=["onnx"])


def test_delegate_that_does_not_load(tiny_models):
    with pytest.raises(ModelLoadError, match=r"delegate 'libno_such_delegate.so' could not be loaded") as info:
        load_interpreter(tiny_models["float32"], delegate="libno_such_delegate.so")
    assert "\n" not in str(info.value)


def test_bad_num_threads(tiny_models):
    with pytest.raises(ModelLoadError, match="num_threads"):
        load_interpreter(tiny_models["float32"], num_threads=0)
