"""train.weights: backbone weights from .keras, .h5 and .weights.h5 files and ImageNet, copied by layer name."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest

from train.config import ModelConfig
from train.model import backbone_layer_names, build_ssd
from train.weights import check_weights_spec, load_backbone_weights


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session(free_memory=False)


def _build_with(config: ModelConfig, weights: str) -> keras.Model:
    """What training does: reject an unusable spec before building, then load it into the built model."""
    check_weights_spec(config.alpha, weights)
    model = build_ssd(config)
    load_backbone_weights(model, config.alpha, weights)
    return model


def _backbone_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    names = set(backbone_layer_names(model))
    return {layer.name: layer.get_weights() for layer in model.layers if layer.name in names and layer.weights}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_backbone_weights_from_path(tmp_path: Path, suffix: str) -> None:
    source = build_ssd(ModelConfig(alpha=0.25, input_size=128, num_classes=3))
    path = tmp_path / f"source{suffix}"
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)
    expected = _backbone_weights(source)
    extra_kernel = source.get_layer("extra_2_3x3_s2").get_weights()[0]
    keras.backend.clear_session(free_memory=False)
    fresh = build_ssd(ModelConfig(alpha=0.25, input_size=160, num_classes=5))
    with pytest.raises(AssertionError):
        _assert_same_weights(_backbone_weights(fresh), expected)
    target = _build_with(ModelConfig(alpha=0.25, input_size=160, num_classes=5), str(path))
    _assert_same_weights(_backbone_weights(target), expected)
    np.testing.assert_array_equal(target.get_layer("extra_2_3x3_s2").get_weights()[0], extra_kernel)
    assert target.get_layer("class_head_0").kernel.shape[-1] == 3 * 6  # other class count: left as built


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_backbone_weights_from_keras_applications_file(tmp_path: Path, suffix: str) -> None:
    reference = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False, weights=None)
    path = tmp_path / f"mobilenet{suffix}"
    if suffix == ".h5":
        reference.save(path)  # legacy HDF5 layout, like the files Keras downloads
    else:
        reference.save_weights(path)
    expected = {layer.name: layer.get_weights() for layer in reference.layers if layer.weights}
    model = _build_with(ModelConfig(alpha=0.25, input_size=128, num_classes=2), str(path))
    _assert_same_weights(_backbone_weights(model), expected)


def test_backbone_weights_errors(tmp_path: Path) -> None:
    config = ModelConfig(alpha=0.25, input_size=128, num_classes=2)
    model = build_ssd(config)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        _build_with(config, str(tmp_path / "missing.keras"))
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="must end in"):
        _build_with(config, str(text))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="unrelated")])
    path = tmp_path / "unrelated.keras"
    other.save(path)
    with pytest.raises(ValueError, match=r"unrelated\.keras.*no layer matched"):
        load_backbone_weights(model, config.alpha, str(path))


def test_imagenet_rejects_unpublished_alpha() -> None:
    with pytest.raises(ValueError, match=r"alpha in \[0.25, 0.5, 0.75, 1.0\].*0.3"):
        _build_with(ModelConfig(alpha=0.3, input_size=128), "imagenet")


def test_imagenet_offline_error_is_clear() -> None:
    filename = "mobilenet_2_5_224_tf_no_top.h5"
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / filename
    if cache.exists():
        pytest.skip(f"{cache} is cached, so the offline path cannot be exercised")
    config = ModelConfig(alpha=0.25, input_size=128, num_classes=2)
    try:
        model = _build_with(config, "imagenet")
    except RuntimeError as error:
        message = str(error)
        assert filename in message and "offline" in message
        assert str(cache) in message and "--backbone-weights PATH" in message
    else:
        assert model.get_layer("conv1").kernel.shape == (3, 3, 3, 8)
        pytest.skip("the ImageNet weights downloaded: this machine is online")
