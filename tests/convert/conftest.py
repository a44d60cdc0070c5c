"""Fixtures for the conversion tests: a tiny detector with the model contract, built fast on 2 cores."""

from __future__ import annotations

import numpy as np
import pytest

from train.config import ModelConfig

LABELS = ["circle", "square", "triangle"]


def build_tiny_detector(config: ModelConfig, width: int = 8, seed: int = 0):
    """A small stand-in with ``train.model.build_ssd``'s contract (input ``image``, outputs
    ``[box_deltas (B, N, 4), class_scores (B, N, C+1)]``, softmax after ``class_logits``)."""
    import keras

    from edge.anchors import boxes_per_location, feature_map_shapes

    keras.utils.set_random_seed(seed)
    height, width_px = config.input_size
    image = keras.Input((height, width_px, 3), name="image", dtype="float32")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(image)
    features = []
    for _ in range(4):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu6")(x)
    features.append(x)
    for _ in range(config.anchors.num_layers - 1):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu6")(x)
        features.append(x)
    boxes, logits = [], []
    shapes = feature_map_shapes(config.input_size, config.anchors.num_layers)
    for feature, num_boxes, (fh, fw) in zip(features, boxes_per_location(config.anchors), shapes, strict=True):
        box = keras.layers.Conv2D(num_boxes * 4, 3, padding="same")(feature)
        boxes.append(keras.layers.Reshape((fh * fw * num_boxes, 4))(box))
        cls = keras.layers.Conv2D(num_boxes * (config.num_classes + 1), 3, padding="same")(feature)
        logits.append(keras.layers.Reshape((fh * fw * num_boxes, config.num_classes + 1))(cls))
    box_deltas = keras.layers.Concatenate(axis=1, name="box_deltas")(boxes)
    class_logits = keras.layers.Concatenate(axis=1, name="class_logits")(logits)
    class_scores = keras.layers.Softmax(name="class_scores")(class_logits)
    return keras.Model(image, [box_deltas, class_scores])


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig(alpha=0.25, input_size=(64, 64), num_classes=len(LABELS))


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    return build_tiny_detector(tiny_config)


@pytest.fixture(scope="session")
def calibration_set(tiny_config) -> list[np.ndarray]:
    """Smooth random uint8 RGB images (blobs, not white noise) at the model input size."""
    import cv2

    rng = np.random.default_rng(0)
    height, width = tiny_config.input_size
    images = []
    for _ in range(16):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        images.append(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))
    return images


def run_tflite(model_bytes: bytes, image: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Invoke a converted model on one uint8 RGB ``image`` at its input size.

    Returns ``({output name: dequantized array (1, ...)}, {output name: interpreter output detail})``,
    named as the model's metadata names them (``box_deltas``/``class_scores`` or the builtin four).
    """
    from ai_edge_litert.interpreter import Interpreter

    from edge.metadata import read_metadata

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    (model_input,) = interpreter.get_input_details()
    interpreter.set_tensor(model_input["index"], image[None].astype(model_input["dtype"]))
    interpreter.invoke()
    details = interpreter.get_output_details()
    positions = read_metadata(model_bytes).outputs
    outputs = {}
    for name, i in positions.items():  # dequantized here, independently of the runtime's own code
        array, (scale, zero_point) = interpreter.get_tensor(details[i]["index"]), details[i]["quantization"]
        quantized = np.issubdtype(array.dtype, np.integer) and scale
        outputs[name] = (
            (array.astype(np.float32) - zero_point) * np.float32(scale) if quantized else array.astype(np.float32)
        )
    return outputs, {name: details[i] for name, i in positions.items()}
