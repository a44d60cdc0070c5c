"""Size and cost of a MobileNet-SSD: parameters and multiply-adds of backbone and detector.

Multiply-adds (MACs) are counted the way the MobileNet paper counts them, from the built Keras
model's layer shapes: a standard convolution costs ``K*K*Cin*Cout*Hout*Wout``, a depthwise
convolution ``K*K*C*Hout*Wout`` (times the depth multiplier), a pointwise one ``Cin*Cout*H*W`` (the
``K=1`` case of a standard one), a dense layer ``in*out``. Biases, BatchNorm, activations,
reshapes and the softmax are not counted. Parameters are counted the same way: the weights and
biases of convolution and dense layers. BatchNorm is left out (it folds into the preceding
convolution for inference, and the paper's figures exclude it); ``keras_params`` is the full Keras
count including BatchNorm statistics.

CLI: ``python -m train.summary --alpha 0.5 --size 160 [--num-classes 4] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys

import keras

from edge.anchors import boxes_per_location, feature_map_shapes
from train.config import ModelConfig, parse_input_size
from train.model import backbone_layer_names, build_ssd


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one layer for a single image (0 for layers that are not conv/dense)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, channels, multiplier = layer.kernel.shape
        _, out_h, out_w, _ = layer.output.shape
        return int(kh * kw * channels * multiplier * out_h * out_w)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin_per_group, cout = layer.kernel.shape
        _, out_h, out_w, _ = layer.output.shape
        return int(kh * kw * cin_per_group * cout * out_h * out_w)
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        positions = 1
        for dim in layer.output.shape[1:-1]:
            positions *= int(dim)
        return int(fan_in * units * positions)
    return 0


def layer_params(layer: keras.layers.Layer) -> int:
    """Parameters of one conv/dense layer (kernel + bias) as the paper counts them; 0 for other layers."""
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
        return int(layer.count_params())
    return 0


def summarize_model(model: keras.Model, config: ModelConfig) -> dict:
    """Parameter and MAC counts of a ``build_ssd`` model (see ``summarize`` for the keys)."""
    backbone = set(backbone_layer_names(model))
    backbone_params = backbone_macs = detector_params = detector_macs = 0
    for layer in model.layers:
        params, macs = layer_params(layer), layer_macs(layer)
        detector_params += params
        detector_macs += macs
        if layer.name in backbone:
            backbone_params += params
            backbone_macs += macs
    num_anchors = int(model.outputs[0].shape[1])
    feature_maps = []
    for index, num_boxes in enumerate(boxes_per_location(config.anchors)):
        _, height, width, _ = model.get_layer(f"box_head_{index}").output.shape
        feature_maps.append(
            {
                "height": int(height),
                "width": int(width),
                "boxes_per_location": num_boxes,
                "anchors": int(height * width * num_boxes),
            }
        )
    return {
        "alpha": config.alpha,
        "input_size": list(config.input_size),
        "num_classes": config.num_classes,
        "backbone_params": int(backbone_params),
        "backbone_macs": int(backbone_macs),
        "detector_params": int(detector_params),
        "detector_macs": int(detector_macs),
        "keras_params": int(model.count_params()),
        "num_anchors": num_anchors,
        "feature_maps": feature_maps,
    }


def summarize(config: ModelConfig) -> dict:
    """Build the model for ``config`` and count its parameters and multiply-adds (per image).

    Returns a dict with ``alpha``, ``input_size`` ``[height, width]``, ``num_classes``,
    ``backbone_params`` / ``backbone_macs`` (MobileNet v1 body without the classifier),
    ``detector_params`` / ``detector_macs`` (whole detector: backbone, extra layers, heads),
    ``keras_params`` (``model.count_params()``, BatchNorm included), ``num_anchors`` and
    ``feature_maps`` (list of ``{height, width, boxes_per_location, anchors}``).
    """
    model = build_ssd(config)
    summary = summarize_model(model, config)
    expected = [list(shape) for shape in feature_map_shapes(config.input_size, config.anchors.num_layers)]
    actual = [[fm["height"], fm["width"]] for fm in summary["feature_maps"]]
    if actual != expected or summary["num_anchors"] != config.num_anchors:
        raise AssertionError(f"model feature maps {actual} disagree with edge.anchors {expected}")
    return summary


def format_table(summary: dict) -> str:
    """Readable, aligned text version of a ``summarize`` result."""
    height, width = summary["input_size"]
    rows = [
        ("width multiplier (alpha)", f"{summary['alpha']:g}"),
        ("input size (HxW)", f"{height}x{width}"),
        ("classes (+ background)", f"{summary['num_classes']} + 1"),
        ("backbone params", f"{summary['backbone_params']:,}  ({summary['backbone_params'] / 1e6:.2f} M)"),
        ("backbone mult-adds", f"{summary['backbone_macs']:,}  ({summary['backbone_macs'] / 1e6:.1f} M)"),
        ("detector params", f"{summary['detector_params']:,}  ({summary['detector_params'] / 1e6:.2f} M)"),
        ("detector mult-adds", f"{summary['detector_macs']:,}  ({summary['detector_macs'] / 1e6:.1f} M)"),
        ("Keras params (with BN)", f"{summary['keras_params']:,}"),
        ("anchors", f"{summary['num_anchors']:,}"),
    ]
    key_width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{key_width}}  {value}" for key, value in rows]
    lines += ["", f"{'feature map':<12}{'size':>9}{'boxes/loc':>11}{'anchors':>9}"]
    for index, fm in enumerate(summary["feature_maps"]):
        size = f"{fm['height']}x{fm['width']}"
        lines.append(f"{index:<12}{size:>9}{fm['boxes_per_location']:>11}{fm['anchors']:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=ModelConfig.alpha, help="width multiplier (> 0)")
    parser.add_argument("--size", type=parse_input_size, default="160", help="input size: 160 or HxW, e.g. 160x224")
    parser.add_argument("--num-classes", type=int, default=ModelConfig.num_classes, help="object classes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        config = ModelConfig(alpha=args.alpha, input_size=args.size, num_classes=args.num_classes)
    except ValueError as error:
        parser.error(str(error))
    summary = summarize(config)
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
