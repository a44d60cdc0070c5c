"""MobileNet-SSD model: shapes for the alpha x size grid, contract, saving, freezing."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from edge.anchors import boxes_per_location, feature_map_shapes
from train.config import ModelConfig
from train.model import (
    BACKBONE_BLOCKS,
    backbone_block_index,
    backbone_layer_names,
    build_ssd,
    set_backbone_trainable,
)

ALPHAS = (0.25, 0.5, 0.75, 1.0)
SIZES = (128, 160, 192, 224, 300)


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session(free_memory=False)


@pytest.fixture(scope="module")
def tiny_model() -> tuple[ModelConfig, keras.Model]:
    """A small non-square model shared by the read-only tests."""
    config = ModelConfig(alpha=0.25, input_size=(128, 160), num_classes=4)
    return config, build_ssd(config)


def _random_images(config: ModelConfig, batch: int = 2, seed: int = 0) -> np.ndarray:
    height, width = config.input_size
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype(np.float32)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("size", SIZES)
def test_output_shapes_match_anchor_count(alpha: float, size: int) -> None:
    config = ModelConfig(alpha=alpha, input_size=size, num_classes=3)
    model = build_ssd(config)
    assert model.input.shape[1:] == (size, size, 3)
    assert model.output_names == ["box_deltas", "class_scores"]
    assert tuple(model.outputs[0].shape) == (None, config.num_anchors, 4)
    assert tuple(model.outputs[1].shape) == (None, config.num_anchors, 4)


@pytest.mark.parametrize(("alpha", "size"), [(0.5, (160, 224)), (0.3, (96, 128)), (1.3, 300)])
def test_non_square_and_odd_multipliers_predict(alpha: float, size) -> None:
    config = ModelConfig(alpha=alpha, input_size=size, num_classes=2)
    model = build_ssd(config)
    deltas, scores = model.predict(_random_images(config), verbose=0)
    assert deltas.shape == (2, config.num_anchors, 4) and deltas.dtype == np.float32
    assert scores.shape == (2, config.num_anchors, 3) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=1e-5)
    assert np.isfinite(deltas).all()


def test_heads_follow_anchor_layout_per_feature_map(tiny_model) -> None:
    config, model = tiny_model
    shapes = feature_map_shapes(config.input_size)
    for index, ((fh, fw), boxes) in enumerate(zip(shapes, boxes_per_location(config.anchors), strict=True)):
        head = model.get_layer(f"box_head_{index}").output
        assert tuple(head.shape[1:]) == (fh, fw, boxes * 4)
        assert model.get_layer(f"box_reshape_{index}").output.shape[1] == fh * fw * boxes
        assert tuple(model.get_layer(f"class_head_{index}").output.shape[1:]) == (fh, fw, boxes * 5)
    stride16 = model.get_layer(f"conv_pw_{11}_relu").output.shape[1:3]
    assert tuple(stride16) == shapes[0]


def test_background_prior_and_class_logits_layer(tiny_model) -> None:
    config, model = tiny_model
    images = _random_images(config)
    training_model = keras.Model(
        model.input, [model.get_layer("box_deltas").output, model.get_layer("class_logits").output]
    )
    deltas, logits = training_model.predict(images, verbose=0)
    ref_deltas, scores = model.predict(images, verbose=0)
    np.testing.assert_allclose(deltas, ref_deltas, atol=1e-5)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(-1, keepdims=True), scores, atol=1e-5)
    assert scores[..., 0].mean() > 0.9, "class-head bias should start with a high background probability"


def test_normalization_is_inside_the_model(tiny_model) -> None:
    config, model = tiny_model
    normalize = keras.Model(model.input, model.get_layer("normalize").output)
    pixels = np.array([0.0, 127.5, 255.0], dtype=np.float32)
    images = np.broadcast_to(pixels[:, None, None, None], (3, *config.input_size, 3)).astype(np.float32)
    out = normalize.predict(images, verbose=0)
    np.testing.assert_allclose(out[:, 0, 0, 0], [-1.0, 0.0, 1.0], atol=1e-6)


def test_save_load_round_trip_without_custom_objects(tmp_path: Path, tiny_model) -> None:
    config, model = tiny_model
    images = _random_images(config, batch=1)
    expected = model.predict(images, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert loaded.output_names == ["box_deltas", "class_scores"]
    assert loaded.get_layer("class_logits") is not None
    for got, want in zip(loaded.predict(images, verbose=0), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_backbone_uses_keras_mobilenet_names_and_shapes() -> None:
    config = ModelConfig(alpha=0.5, input_size=224, num_classes=2)
    model = build_ssd(config)
    reference = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.5, include_top=False, weights=None)
    reference_shapes = {
        layer.name: [tuple(w.shape) for w in layer.weights] for layer in reference.layers if layer.weights
    }
    names = set(backbone_layer_names(model))
    ours = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers if layer.name in names}
    ours = {name: shapes for name, shapes in ours.items() if shapes}
    assert ours == reference_shapes
    assert "extra_1_1x1" not in names and "box_head_0" not in names


def test_set_backbone_trainable_freezes_and_fine_tunes() -> None:
    config = ModelConfig(alpha=0.25, input_size=128, num_classes=2)
    model = build_ssd(config)
    names = backbone_layer_names(model)
    assert {backbone_block_index(n) for n in names} == set(range(len(BACKBONE_BLOCKS) + 1))
    all_trainable = len(model.trainable_weights)

    set_backbone_trainable(model, False)
    assert not any(model.get_layer(n).trainable for n in names)
    assert model.get_layer("extra_1_1x1").trainable and model.get_layer("class_head_0").trainable
    frozen = len(model.trainable_weights)
    assert 0 < frozen < all_trainable

    for trainable in (False, True):  # --freeze-backbone --fine-tune-from 12, or fine-tune alone
        set_backbone_trainable(model, trainable, fine_tune_from=12)
        assert model.get_layer("conv_dw_12").trainable and model.get_layer("conv_pw_13_bn").trainable
        assert not model.get_layer("conv_pw_11").trainable and not model.get_layer("conv1_bn").trainable
        assert frozen < len(model.trainable_weights) < all_trainable

    set_backbone_trainable(model, True)
    assert len(model.trainable_weights) == all_trainable
    with pytest.raises(ValueError, match="fine_tune_from"):
        set_backbone_trainable(model, True, fine_tune_from=14)


def test_frozen_batchnorm_keeps_its_statistics() -> None:
    config = ModelConfig(alpha=0.25, input_size=128, num_classes=2)
    model = build_ssd(config)
    set_backbone_trainable(model, True, fine_tune_from=3)
    frozen_bn, free_bn = model.get_layer("conv_pw_2_bn"), model.get_layer("conv_dw_3_bn")
    before_frozen = np.array(frozen_bn.moving_mean)
    before_free = np.array(free_bn.moving_mean)
    model(_random_images(config), training=True)
    np.testing.assert_array_equal(np.array(frozen_bn.moving_mean), before_frozen)
    assert not np.allclose(np.array(free_bn.moving_mean), before_free)
