"""MobileNet v1 SSD in Keras 3 (functional API, stock layers only).

Model contract (``docs/ARCHITECTURE.md``):

* input ``image``: float32 ``(batch, H, W, 3)`` raw RGB pixels in [0, 255]; a ``Rescaling`` layer
  (``x / 127.5 - 1``) normalizes inside the model, so an int8 model can take uint8 camera pixels.
* outputs, in this order: ``box_deltas`` float32 ``(batch, N, 4)`` (``ty, tx, th, tw``, see
  ``edge.boxes.encode_boxes``) and ``class_scores`` float32 ``(batch, N, C+1)`` (softmax, background at
  index 0). The concatenated pre-softmax logits are the layer ``class_logits``.
* ``N == config.num_anchors`` and the anchor order is that of ``edge.anchors.generate_anchors``:
  feature map by feature map, then row, column, box.

The backbone reuses ``keras.applications.MobileNet``'s layer names and channel rule
(``int(filters * alpha)``), so ImageNet weights copy over by layer name (``train.weights``). Every convolution uses
'same' padding, so feature-map sizes equal ``edge.anchors.feature_map_shapes`` for any input size.
The extra feature layers follow the TF Object Detection API's ``ssd_mobilenet_v1``: a 1x1 conv to
depth/2, then a 3x3 stride-2 conv to depth (depths 512, 256, 256, 128 times alpha, at least 16).
Box and class heads are one 1x1 conv each per map, as in ``ssd_mobilenet_v1_coco.config``
(``convolutional_box_predictor { kernel_size: 1 }``).
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np

from edge.anchors import boxes_per_location, feature_map_shapes
from train.config import ModelConfig

BACKBONE_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
"""``(pointwise filters, depthwise stride)`` of MobileNet v1 blocks 1..13 (before the width multiplier)."""

STRIDE16_BLOCK = 11
"""Block whose pointwise output (``conv_pw_11_relu``) is the first SSD feature map (stride 16)."""

EXTRA_LAYER_DEPTHS = (512, 256, 256, 128)
"""Depths of the SSD extra feature layers in ``ssd_mobilenet_v1`` (before the width multiplier)."""

MIN_DEPTH = 16
BACKGROUND_PRIOR = 0.99
"""Initial softmax probability of the background class (class-head bias initialisation)."""

BN_MOMENTUM = 0.9
"""Short CPU schedules move the weights fast; 0.99 left the moving statistics ~100 steps stale (measured)."""
BN_EPSILON = 1e-3

_BACKBONE_NAME = re.compile(r"^(conv1|conv_(?:dw|pw|pad)_(\d+))(?:_bn|_relu)?$")


def _backbone_filters(filters: int, alpha: float) -> int:
    return max(int(filters * alpha), 1)


def _extra_depth(depth: int, alpha: float) -> int:
    return max(int(depth * alpha), MIN_DEPTH)


def extra_layer_depths(num_extra: int) -> list[int]:
    """Depths (before alpha) of ``num_extra`` extra layers; beyond the standard four, 128 is repeated."""
    return [EXTRA_LAYER_DEPTHS[min(i, len(EXTRA_LAYER_DEPTHS) - 1)] for i in range(num_extra)]


def _conv_bn_relu(x, filters: int, kernel: int, strides: int, name: str):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x)


def _mobilenet_backbone(x, alpha: float):
    """MobileNet v1 body on normalized images; returns the stride-16 and stride-32 feature maps."""
    x = _conv_bn_relu(x, _backbone_filters(32, alpha), 3, 2, "conv1")
    stride16 = None
    for block_id, (filters, strides) in enumerate(BACKBONE_BLOCKS, start=1):
        x = keras.layers.DepthwiseConv2D(
            3, strides=strides, padding="same", use_bias=False, name=f"conv_dw_{block_id}"
        )(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"conv_dw_{block_id}_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
        x = _conv_bn_relu(x, _backbone_filters(filters, alpha), 1, 1, f"conv_pw_{block_id}")
        if block_id == STRIDE16_BLOCK:
            stride16 = x
    return stride16, x


def _class_head_bias(num_boxes: int, num_classes: int) -> np.ndarray:
    """Bias ``(num_boxes * (num_classes + 1),)`` giving softmax ``BACKGROUND_PRIOR`` to background."""
    bias = np.zeros((num_boxes, num_classes + 1), dtype=np.float32)
    bias[:, 0] = math.log(BACKGROUND_PRIOR * num_classes / (1.0 - BACKGROUND_PRIOR))
    return bias.reshape(-1)


def build_ssd(config: ModelConfig) -> keras.Model:
    """Build the MobileNet-SSD inference model for ``config`` (see the module docstring for the contract).

    Weights are random (class heads biased towards background); ``train.weights.load_backbone_weights``
    applies ImageNet or file weights to the backbone.

    Args:
        config: multipliers, number of classes and anchor geometry.

    Returns:
        A ``keras.Model`` with input ``image`` float32 ``(B, H, W, 3)`` in [0, 255] and outputs
        ``[box_deltas (B, N, 4), class_scores (B, N, C+1)]``, ``N == config.num_anchors``.
    """
    height, width = config.input_size
    num_layers = config.anchors.num_layers
    boxes = boxes_per_location(config.anchors)
    expected_shapes = feature_map_shapes(config.input_size, num_layers)
    num_outputs = config.num_classes + 1

    image = keras.Input(shape=(height, width, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="normalize")(image)
    stride16, stride32 = _mobilenet_backbone(x, config.alpha)
    feature_maps = [stride16, stride32]
    x = stride32
    for index, depth in enumerate(extra_layer_depths(num_layers - 2), start=1):
        x = _conv_bn_relu(x, _extra_depth(depth // 2, config.alpha), 1, 1, f"extra_{index}_1x1")
        x = _conv_bn_relu(x, _extra_depth(depth, config.alpha), 3, 2, f"extra_{index}_3x3_s2")
        feature_maps.append(x)

    box_outputs, class_outputs = [], []
    for index, (feature, num_boxes, (fh, fw)) in enumerate(zip(feature_maps, boxes, expected_shapes, strict=True)):
        if tuple(feature.shape[1:3]) != (fh, fw):
            raise AssertionError(f"feature map {index} is {tuple(feature.shape[1:3])}, edge.anchors expects {(fh, fw)}")
        # 1x1 heads (measured): SSDLite's 3x3 depthwise stems cost 16 % of the alpha-0.25 training step at
        # 224 and pushed the alpha-0.5 int8 file to 0.2725x the float32 one (a depthwise channel carries
        # 8 bytes of per-channel scales for 9 weights); with 1x1 heads it is 0.267x.
        box = keras.layers.Conv2D(num_boxes * 4, 1, name=f"box_head_{index}")(feature)
        box_outputs.append(keras.layers.Reshape((fh * fw * num_boxes, 4), name=f"box_reshape_{index}")(box))
        cls = keras.layers.Conv2D(num_boxes * num_outputs, 1, name=f"class_head_{index}")(feature)
        class_outputs.append(
            keras.layers.Reshape((fh * fw * num_boxes, num_outputs), name=f"class_reshape_{index}")(cls)
        )
    box_deltas = keras.layers.Concatenate(axis=1, name="box_deltas")(box_outputs)
    class_logits = keras.layers.Concatenate(axis=1, name="class_logits")(class_outputs)
    class_scores = keras.layers.Softmax(axis=-1, name="class_scores")(class_logits)

    alpha_text = f"{config.alpha:g}".replace(".", "_")
    model = keras.Model(image, [box_deltas, class_scores], name=f"mobilenet_ssd_a{alpha_text}_{height}x{width}")
    if model.outputs[0].shape[1] != config.num_anchors:
        raise AssertionError(f"model has {model.outputs[0].shape[1]} boxes, config expects {config.num_anchors}")

    for index, num_boxes in enumerate(boxes):
        head = model.get_layer(f"class_head_{index}")
        head.bias.assign(_class_head_bias(num_boxes, config.num_classes))
    return model


def backbone_layer_names(model: keras.Model) -> list[str]:
    """Names of the MobileNet v1 backbone layers (``conv1*``, ``conv_dw_*``, ``conv_pw_*``, ``conv_pad_*``)."""
    return [layer.name for layer in model.layers if _BACKBONE_NAME.match(layer.name)]


def backbone_block_index(layer_name: str) -> int | None:
    """MobileNet block of a backbone layer: 0 for ``conv1*``, ``i`` for ``conv_dw_i*`` / ``conv_pw_i*``, else None."""
    match = _BACKBONE_NAME.match(layer_name)
    if not match:
        return None
    return 0 if match.group(2) is None else int(match.group(2))


def set_backbone_trainable(model: keras.Model, trainable: bool, fine_tune_from: int | None = None) -> None:
    """Freeze or unfreeze the backbone (``--freeze-backbone`` / ``--fine-tune-from``).

    Args:
        model: a model from ``build_ssd`` (or a training model sharing its layers).
        trainable: False freezes the whole backbone, True unfreezes it; used when ``fine_tune_from``
            is None.
        fine_tune_from: the first MobileNet block (0 = ``conv1``, 1..13) left trainable; earlier
            blocks are frozen, whatever ``trainable`` says (so ``--freeze-backbone --fine-tune-from 12``
            trains blocks 12-13 and the detector layers).

    Frozen BatchNormalization layers run in inference mode (Keras 3 semantics of ``trainable=False``),
    so their moving statistics stay fixed. Detector layers (extras, heads) are not touched.
    Recompile the model after calling this.
    """
    last_block = len(BACKBONE_BLOCKS)
    if fine_tune_from is not None and not 0 <= fine_tune_from <= last_block:
        raise ValueError(f"fine_tune_from must be a MobileNet block index in 0..{last_block}, got {fine_tune_from}")
    names = backbone_layer_names(model)
    if not names:
        raise ValueError(f"model {model.name!r} has no MobileNet backbone layers (conv1, conv_dw_*, conv_pw_*)")
    for name in names:
        if fine_tune_from is None:
            model.get_layer(name).trainable = bool(trainable)
        else:
            model.get_layer(name).trainable = backbone_block_index(name) >= fine_tune_from
