"""Session fixtures for the edge tests: tiny untrained detectors converted to real ``.tflite`` files.

The models come from the real training and conversion stages (``train.model.build_ssd``,
``convert.converter.convert``: ``tf.lite.TFLiteConverter`` + ``edge.metadata``), so building them needs
TensorFlow; tests using them are skipped with the reason where it is not installed. Converted files are
cached in pytest's cache, keyed by the source of the stages that make them, so reruns skip TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

LABELS = ["circle", "square", "triangle"]
INPUT_SIZE = (96, 128)  # non-square on purpose: catches height/width mix-ups
MODEL_KINDS = {"float32": ("float32", "numpy"), "int8": ("int8", "numpy"), "builtin": ("float32", "builtin")}
_ROOT = Path(__file__).resolve().parents[2]
_SOURCES = ("train/model.py", "train/config.py", "convert/converter.py", "edge/metadata.py", "edge/anchors.py")


def _cache_key() -> str:
    digest = hashlib.sha256(repr((LABELS, INPUT_SIZE, MODEL_KINDS)).encode())
    for name in _SOURCES:
        path = _ROOT / name
        digest.update(path.read_bytes() if path.exists() else b"missing")
    return digest.hexdigest()[:16]


def _build(out: Path) -> None:
    import keras

    from convert.converter import convert
    from train.config import ModelConfig
    from train.model import build_ssd

    keras.utils.set_random_seed(0)
    config = ModelConfig(alpha=0.25, input_size=INPUT_SIZE, num_classes=len(LABELS))
    model = build_ssd(config)
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (*INPUT_SIZE, 3), dtype=np.uint8) for _ in range(4)]
    for kind, (quant, postprocess) in MODEL_KINDS.items():
        tflite = convert(
            model,
            config,
            LABELS,
            quant=quant,
            calibration_images=calibration if quant == "int8" else None,
            postprocess=postprocess,
        )
        (out / f"tiny_{kind}.tflite").write_bytes(tflite)


@pytest.fixture(scope="session")
def tiny_models(request, tmp_path_factory) -> dict[str, Path]:
    """``{"float32", "int8", "builtin"}`` -> ``.tflite`` of one untrained alpha-0.25 SSD (96x128, 3 classes)."""
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    name = f"edge_tiny_models_{_cache_key()}"
    out = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
    paths = {kind: out / f"tiny_{kind}.tflite" for kind in MODEL_KINDS}
    if not all(p.exists() for p in paths.values()):
        if importlib.util.find_spec("tensorflow") is None:
            pytest.skip("TensorFlow is not installed: cannot build and convert the test models")
        _build(out)
    return paths
