"""FusedBatchNormalization trains like Keras' BatchNormalization, and the training twin mirrors its model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from train.config import ModelConfig
from train.fused_batch_norm import FusedBatchNormalization, copy_weights, with_fused_batch_norm
from train.model import build_ssd, set_backbone_trainable

MOMENTUM = 0.9


def _pair(channels: int = 5) -> tuple[keras.layers.BatchNormalization, FusedBatchNormalization]:
    rng = np.random.default_rng(0)
    plain = keras.layers.BatchNormalization(momentum=MOMENTUM, epsilon=1e-3)
    fused = FusedBatchNormalization(momentum=MOMENTUM, epsilon=1e-3)
    for layer in (plain, fused):
        layer.build((None, 6, 7, channels))
    weights = [
        rng.uniform(0.5, 2.0, channels),  # gamma
        rng.normal(size=channels),  # beta
        rng.normal(size=channels),  # moving mean
        rng.uniform(0.5, 2.0, channels),  # moving variance
    ]
    plain.set_weights([w.astype(np.float32) for w in weights])
    fused.set_weights([w.astype(np.float32) for w in weights])
    return plain, fused


def _inputs(channels: int = 5) -> tf.Tensor:
    return tf.constant(np.random.default_rng(1).normal(3.0, 2.0, (4, 6, 7, channels)).astype(np.float32))


def test_training_step_matches_keras_outputs_gradients_and_moving_statistics() -> None:
    plain, fused = _pair()
    x = _inputs()
    upstream = tf.constant(np.random.default_rng(2).normal(size=x.shape).astype(np.float32))
    results = []
    for layer in (plain, fused):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            objective = tf.reduce_sum(y * upstream)
        grads = tape.gradient(objective, [x, layer.gamma, layer.beta])
        results.append((y.numpy(), [g.numpy() for g in grads]))
    (y_plain, grads_plain), (y_fused, grads_fused) = results
    np.testing.assert_allclose(y_fused, y_plain, atol=1e-4)
    for g_fused, g_plain in zip(grads_fused, grads_plain, strict=True):
        np.testing.assert_allclose(g_fused, g_plain, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-6)
    # The fused kernel's batch variance is unbiased: n / (n - 1) times Keras' population variance.
    n = 4 * 6 * 7
    batch_variance = tf.math.reduce_variance(x, axis=(0, 1, 2)).numpy()
    _, fresh = _pair()
    expected = fresh.moving_variance.numpy() * MOMENTUM + batch_variance * n / (n - 1) * (1 - MOMENTUM)
    np.testing.assert_allclose(fused.moving_variance.numpy(), expected, rtol=1e-5)


def test_inference_and_frozen_layers_use_moving_statistics() -> None:
    plain, fused = _pair()
    x = _inputs()
    np.testing.assert_allclose(fused(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    fused.trainable = False
    before = fused.moving_variance.numpy().copy()
    np.testing.assert_allclose(fused(x, training=True).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    np.testing.assert_array_equal(fused.moving_variance.numpy(), before)


def test_non_image_inputs_fall_back_to_keras() -> None:
    layer = FusedBatchNormalization(momentum=MOMENTUM)
    x = tf.constant(np.random.default_rng(3).normal(size=(8, 3)).astype(np.float32))
    y = layer(x, training=True).numpy()
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)


def test_twin_has_fused_layers_same_weights_and_flags_and_copies_back() -> None:
    model = build_ssd(ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=2))
    set_backbone_trainable(model, False, fine_tune_from=12)
    twin = with_fused_batch_norm(model)
    plain_bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert plain_bn and not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers)
    for layer in plain_bn:
        twin_layer = twin.get_layer(layer.name)
        assert isinstance(twin_layer, FusedBatchNormalization)
        assert twin_layer.trainable == layer.trainable
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    images = np.random.default_rng(4).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    for got, want in zip(twin.predict(images, verbose=0), model.predict(images, verbose=0), strict=True):
        np.testing.assert_array_equal(got, want)

    twin(images, training=True)  # moves the twin's trainable batch-norm statistics only
    moved = twin.get_layer("extra_1_1x1_bn").moving_variance.numpy()
    assert not np.allclose(moved, model.get_layer("extra_1_1x1_bn").moving_variance.numpy())
    copy_weights(twin, model)
    np.testing.assert_array_equal(model.get_layer("extra_1_1x1_bn").moving_variance.numpy(), moved)


def test_copy_weights_refuses_different_models() -> None:
    model = build_ssd(ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=2))
    with pytest.raises(ValueError, match="same weights"):
        copy_weights(model, keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
