"""Keras detector -> TFLite bytes, with the model's self-description embedded. No file I/O.

TF 2.21 + Keras 3 (no tf-keras): the model is wrapped in a ``tf.function`` with a fixed
``(1, H, W, 3)`` float32 input, its variables are frozen to constants
(``convert_variables_to_constants_v2``; the saved-model route leaves ``READ_VARIABLE`` ops that the
int8 calibrator cannot run) and the concrete function goes through ``TFLiteConverter``.

Quantization modes (``QUANT_MODES``):

* ``float32`` — no quantization; raw outputs match Keras to ~1e-5.
* ``float16`` — float16 weights, float32 compute and I/O.
* ``dynamic`` — int8 weights, float activations, float32 I/O.
* ``int8`` — full integer: uint8 input with scale 1 / zero point 0 (raw camera pixels go in
  unchanged; the model's ``x / 127.5 - 1`` normalization is folded into the first layers), int8
  per-channel weights, int8 activations and int8 outputs (the edge dequantizes with each output's
  scale / zero point). ``class_scores`` comes out of TFLite's int8 softmax with the fixed
  scale 1/256, zero point -128, so scores have a resolution of 0.0039.

``postprocess="builtin"`` appends the standard ``TFLite_Detection_PostProcess`` custom op
(anchors as a constant, scales y/x/h/w = 1/variances = 10/10/5/5), giving the usual four float32
outputs ``boxes (1, K, 4)`` normalized ``ymin, xmin, ymax, xmax``, ``classes (1, K)`` 0-based label
indices, ``scores (1, K)`` and ``count (1,)``, laid out as the tools that read such models expect
(``docs/INTEROP.md``):

* the interpreter's output list is in the TF1 order ``boxes, classes, scores, count`` (rpicam-apps'
  ``object_detect_tf`` stage, picamera2's examples and pycoral without a signature read positions 0..3);
* the ``serving_default`` signature names them as the TF2 Object Detection API export does,
  ``output_0`` count, ``output_1`` scores, ``output_2`` classes, ``output_3`` boxes (pycoral's
  ``get_objects`` reads those names whenever the model has a signature);
* every one of the ``max_detections`` slots is written: the op's fast NMS writes only the first
  ``count`` slots and leaves the rest as the arena held them (NaN, 3e38), which tools that loop over
  every slot report as ghost objects, so the graph zeroes the slots past ``count`` (score 0, class 0,
  box 0). The NMS score threshold defaults to 1e-8 as in the TF OD API export, so ``count`` is usually
  ``max_detections`` and the tools' own score threshold decides.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

from convert.metadata_writer import embed_metadata, pack_model
from edge.anchors import ANCHOR_CODE_VERSION
from edge.metadata import (
    BUILTIN_OUTPUTS,
    POSTPROCESS_MODES,
    QUANTIZATION_MODES,
    ModelMetadata,
    anchors_sha256,
)
from train.config import ModelConfig

log = logging.getLogger(__name__)

QUANT_MODES = QUANTIZATION_MODES
RAW_OUTPUTS = ("box_deltas", "class_scores")
SIGNATURE_KEY = "serving_default"
BUILTIN_SIGNATURE_NAMES = {"output_0": "count", "output_1": "scores", "output_2": "classes", "output_3": "boxes"}
"""Signature output name -> output, as the TF2 OD API's TFLite export names them and pycoral's ``get_objects`` reads."""


@dataclasses.dataclass(frozen=True)
class BuiltinPostprocess:
    """Attributes of the ``TFLite_Detection_PostProcess`` op (the TF2 OD API export's defaults).

    ``score_threshold`` 1e-8 lets the op fill its ``max_detections`` slots (see the module docstring);
    ``use_regular_nms`` False is the op's fast NMS (one class per anchor, NMS across classes), True is
    per-class NMS like ``edge.postprocess`` (slower on the device; ``python -m convert`` uses it by default,
    docs/INTEROP.md).
    """

    max_detections: int = 100
    score_threshold: float = 1e-8
    iou_threshold: float = 0.5
    use_regular_nms: bool = False
    detections_per_class: int = 100

    def __post_init__(self) -> None:
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"NMS score threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"NMS IoU threshold must be in (0, 1], got {self.iou_threshold}")
        if self.detections_per_class < 1:
            raise ValueError(f"detections_per_class must be >= 1, got {self.detections_per_class}")


def check_quant_mode(quant: str) -> str:
    if quant not in QUANT_MODES:
        raise ValueError(f"unknown quantization mode {quant!r}; expected one of {', '.join(QUANT_MODES)}")
    return quant


def check_postprocess(postprocess: str) -> str:
    if postprocess not in POSTPROCESS_MODES:
        raise ValueError(f"unknown postprocess {postprocess!r}; expected one of {', '.join(POSTPROCESS_MODES)}")
    return postprocess


def check_detector(model, model_config: ModelConfig, source: str = "model") -> None:
    """Raise ``ValueError`` unless ``model`` follows the model contract of ``docs/ARCHITECTURE.md`` for ``model_config``.

    Expected: one input ``(None, H, W, 3)``; outputs ``box_deltas (None, N, 4)`` and
    ``class_scores (None, N, C+1)`` with ``N = model_config.num_anchors``.
    """
    height, width = model_config.input_size
    expected = (
        f"a detector from this project (train/model.py build_ssd): one input (None, {height}, {width}, 3) and "
        f"outputs box_deltas (None, {model_config.num_anchors}, 4), "
        f"class_scores (None, {model_config.num_anchors}, {model_config.num_classes + 1})"
    )
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != (height, width, 3):
        got = [tuple(t.shape) for t in inputs]
        raise ValueError(f"{source}: input shapes {got} do not match; expected {expected}")
    shapes = _output_shapes(model)
    want = {
        "box_deltas": (model_config.num_anchors, 4),
        "class_scores": (model_config.num_anchors, model_config.num_classes + 1),
    }
    if set(shapes) != set(want) or any(tuple(shapes[k][1:]) != want[k] for k in want):
        raise ValueError(f"{source}: outputs {shapes} do not match; expected {expected}")


def _output_shapes(model) -> dict[str, tuple]:
    outputs = list(getattr(model, "outputs", None) or [])
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(outputs):
        names = [str(i) for i in range(len(outputs))]
    return {name: tuple(t.shape) for name, t in zip(names, outputs, strict=True)}


def _raw_outputs(model, image):
    """Call ``model`` and return ``(box_deltas, class_scores)`` whether it returns a dict or a list."""
    out = model(image, training=False)
    if isinstance(out, dict):
        return out["box_deltas"], out["class_scores"]
    names = list(getattr(model, "output_names", None) or RAW_OUTPUTS)
    by_name = dict(zip(names, out, strict=True))
    return by_name["box_deltas"], by_name["class_scores"]


def postprocess_implements_signature(model_config: ModelConfig, options: BuiltinPostprocess) -> str:
    """The ``experimental_implements`` string the MLIR converter legalizes to ``TFLite_Detection_PostProcess``."""
    v = model_config.variances
    attrs = [
        'name: "TFLite_Detection_PostProcess"',
        f'attr {{ key: "max_detections" value {{ i: {options.max_detections} }} }}',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        f'attr {{ key: "detections_per_class" value {{ i: {options.detections_per_class} }} }}',
        f'attr {{ key: "use_regular_nms" value {{ b: {str(options.use_regular_nms).lower()} }} }}',
        f'attr {{ key: "nms_score_threshold" value {{ f: {options.score_threshold!r} }} }}',
        f'attr {{ key: "nms_iou_threshold" value {{ f: {options.iou_threshold!r} }} }}',
        f'attr {{ key: "y_scale" value {{ f: {1.0 / v[0]:f} }} }}',
        f'attr {{ key: "x_scale" value {{ f: {1.0 / v[1]:f} }} }}',
        f'attr {{ key: "h_scale" value {{ f: {1.0 / v[2]:f} }} }}',
        f'attr {{ key: "w_scale" value {{ f: {1.0 / v[3]:f} }} }}',
        f'attr {{ key: "num_classes" value {{ i: {model_config.num_classes} }} }}',
    ]
    return " ".join(attrs)


def _serving_function(model, model_config: ModelConfig, postprocess: str, options: BuiltinPostprocess):
    """A ``(1, H, W, 3)`` float32 ``image`` -> dict-of-outputs concrete function without variables.

    The Keras model is frozen to constants first; the composite post-processing function (builtin) is
    added around the frozen model unfrozen so its ``experimental_implements`` attribute reaches the converter.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    height, width = model_config.input_size
    spec = tf.TensorSpec([1, height, width, 3], tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def raw(image):
        box_deltas, class_scores = _raw_outputs(model, image)
        return {"box_deltas": box_deltas, "class_scores": class_scores}

    raw_concrete = raw.get_concrete_function()
    raw_keys = sorted(raw_concrete.structured_outputs)  # tf.nest flattens dicts by sorted key
    frozen_raw = convert_variables_to_constants_v2(raw_concrete)
    anchors = tf.constant(model_config.generate_anchors(), dtype=tf.float32)

    @tf.function(experimental_implements=postprocess_implements_signature(model_config, options))
    def detection_postprocess(box_encodings, class_predictions, anchors):
        # Placeholder body: the converter replaces this composite function by the custom op.
        boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
        classes = tf.constant(0.0, dtype=tf.float32, name="classes")
        scores = tf.constant(0.0, dtype=tf.float32, name="scores")
        count = tf.constant(0.0, dtype=tf.float32, name="num_detections")
        return boxes, classes, scores, count

    @tf.function(input_signature=[spec])
    def serve(image):
        outputs = dict(zip(raw_keys, tf.nest.flatten(frozen_raw(image)), strict=True))
        if postprocess == "numpy":
            return outputs
        boxes, classes, scores, count = detection_postprocess(outputs["box_deltas"], outputs["class_scores"], anchors)
        # The op's fast NMS leaves the slots past `count` unwritten (NaN, 3e38 or an earlier frame's values);
        # zero them in the graph so every slot is a valid detection of score 0 for tools that read them all.
        # Compared as int32: the int8 calibrator would quantize a float comparison's count input (65 -> 64.5).
        written = tf.range(options.max_detections)[None, :] < tf.reshape(tf.cast(count, tf.int32), [-1, 1])
        boxes = tf.where(written[:, :, None], boxes, tf.zeros_like(boxes))
        classes = tf.where(written, classes, tf.zeros_like(classes))
        scores = tf.where(written, scores, tf.zeros_like(scores))
        by_name = {"boxes": boxes, "classes": classes, "scores": scores, "count": count}
        return {signature_name: by_name[name] for signature_name, name in BUILTIN_SIGNATURE_NAMES.items()}

    return serve.get_concrete_function()


def _pin_input_range(image: np.ndarray) -> np.ndarray:
    """Copy of ``image`` with one pixel at 0 and one at 255 so the calibrated input range is exactly [0, 255].

    That range gives the uint8 input scale 1 and zero point 0, i.e. raw camera pixels.
    """
    image = np.array(image, dtype=np.float32, copy=True)
    image[0, 0, 0, :] = 0.0
    image[0, 0, -1, :] = 255.0
    return image


def _representative_dataset(images: Iterable[np.ndarray], input_size: tuple[int, int]):
    height, width = input_size

    def generate() -> Iterator[list[np.ndarray]]:
        count = 0
        for image in images:
            array = np.asarray(image)
            if array.shape != (height, width, 3) or array.dtype != np.uint8:
                raise ValueError(
                    f"calibration image {count}: expected uint8 RGB ({height}, {width}, 3) at the model input size, "
                    f"got {array.dtype} {array.shape}"
                )
            count += 1
            yield [_pin_input_range(array[None])]
        if count == 0:
            raise ValueError("calibration set is empty: int8 needs uint8 RGB images at the model input size")

    return generate


def _tflite_converter(saved_model_dir: str, quant: str, calibration_images, input_size, postprocess: str):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if postprocess == "builtin":
        converter.allow_custom_ops = True
    if quant == "float32":
        pass
    elif quant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative_dataset(calibration_images, input_size)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if postprocess == "builtin":
            converter.target_spec.supported_ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.inference_input_type = tf.uint8
        if postprocess == "numpy":
            converter.inference_output_type = tf.int8
    else:
        check_quant_mode(quant)
    return converter


def _output_order(tflite_bytes: bytes) -> dict[str, int]:
    """Map each output (``RAW_OUTPUTS`` or ``BUILTIN_OUTPUTS`` names) to its position in the interpreter's list."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_bytes)
    signature = interpreter._get_full_signature_list()[SIGNATURE_KEY]["outputs"]  # {name: tensor index}
    positions = {detail["index"]: i for i, detail in enumerate(interpreter.get_output_details())}
    return {BUILTIN_SIGNATURE_NAMES.get(name, name): positions[index] for name, index in signature.items()}


def order_builtin_outputs(tflite_bytes: bytes) -> bytes:
    """``tflite_bytes`` with the subgraph's outputs listed as ``BUILTIN_OUTPUTS`` (boxes, classes, scores, count).

    The converter lists outputs in its own order; readers without signatures (rpicam-apps, picamera2's
    examples) take positions 0..3 as the TF1 export's order. The signature (``output_0``..``output_3`` by
    tensor index) is unchanged.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    (signature,) = [s for s in model.signatureDefs or [] if _text(s.signatureKey) == SIGNATURE_KEY]
    by_name = {BUILTIN_SIGNATURE_NAMES[_text(t.name)]: t.tensorIndex for t in signature.outputs}
    subgraph = model.subgraphs[signature.subgraphIndex]
    subgraph.outputs = np.array([by_name[name] for name in BUILTIN_OUTPUTS], dtype=np.int32)
    return pack_model(model, size_hint=len(tflite_bytes))


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def shorten_tensor_names(tflite_bytes: bytes, scope: str) -> bytes:
    """``tflite_bytes`` with each tensor named after its first op only, without the Keras ``scope``.

    The converter names a fused tensor after every op folded into it
    (``"ssd_1/conv_pw_1_relu/Relu6;ssd_1/conv_pw_1_bn/batchnorm/add_1;..."``): ~40 KB of a 1.6 MB
    int8 model. ``"conv_pw_1_relu/Relu6"`` still says where a tensor comes from; the signature's
    input and output names are kept as they are.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    prefix = re.compile(rf"^{re.escape(scope)}(_\d+)?/")
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else (tensor.name or "")
            tensor.name = prefix.sub("", name.split(";", 1)[0])
    return pack_model(model, size_hint=len(tflite_bytes))


def _check_io(tflite_bytes: bytes, quant: str, postprocess: str, model_config: ModelConfig) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_bytes)
    (model_input,) = interpreter.get_input_details()
    height, width = model_config.input_size
    if tuple(model_input["shape"]) != (1, height, width, 3):
        raise RuntimeError(f"converted model input shape {model_input['shape']} is not (1, {height}, {width}, 3)")
    if quant == "int8":
        scale, zero_point = model_input["quantization"]
        if model_input["dtype"] != np.uint8 or not np.isclose(scale, 1.0) or zero_point != 0:
            raise RuntimeError(
                f"int8 model input is {model_input['dtype'].__name__} scale={scale} zero_point={zero_point}; "
                "expected uint8 scale=1 zero_point=0 (raw pixels)"
            )


def convert(
    model,
    model_config: ModelConfig,
    labels: list[str],
    quant: str = "int8",
    calibration_images: Iterable[np.ndarray] | None = None,
    postprocess: str = "numpy",
    accuracy: dict | None = None,
    builtin_options: BuiltinPostprocess | None = None,
) -> bytes:
    """Convert a Keras detector to ``.tflite`` bytes with ``edge_ssd_metadata`` embedded.

    ``model``: the Keras model contract (float32 ``(1, H, W, 3)`` raw RGB pixels -> ``box_deltas
    (1, N, 4)``, ``class_scores (1, N, C+1)``). ``calibration_images``: uint8 RGB ``(H, W, 3)`` at the
    model input size (required for ``int8``; see ``convert.calibration``). ``labels``: ``C`` class
    names (background excluded). ``accuracy`` is stored verbatim in the metadata.
    """
    check_quant_mode(quant)
    check_postprocess(postprocess)
    check_detector(model, model_config)
    if quant == "int8" and calibration_images is None:
        raise ValueError("quant='int8' needs calibration_images: uint8 RGB images at the model input size")
    if quant == "int8" and hasattr(calibration_images, "__len__") and len(calibration_images) == 0:
        raise ValueError("calibration set is empty: int8 needs uint8 RGB images at the model input size")
    if len(labels) != model_config.num_classes:
        raise ValueError(f"labels: got {len(labels)} names, model has num_classes={model_config.num_classes}")
    options = builtin_options or BuiltinPostprocess()
    import tensorflow as tf

    serve = _serving_function(model, model_config, postprocess, options)
    log.info("converting to TFLite (quant=%s, postprocess=%s)", quant, postprocess)
    with tempfile.TemporaryDirectory(prefix="edge_ssd_export_") as saved_model_dir:
        # The SavedModel route (not from_concrete_functions) keeps the composite post-processing function
        # and gives the outputs named signature entries.
        tf.saved_model.save(tf.Module(), saved_model_dir, signatures={SIGNATURE_KEY: serve})
        converter = _tflite_converter(saved_model_dir, quant, calibration_images, model_config.input_size, postprocess)
        tflite_bytes = shorten_tensor_names(bytes(converter.convert()), model.name)
    if postprocess == "builtin":
        tflite_bytes = order_builtin_outputs(tflite_bytes)
    _check_io(tflite_bytes, quant, postprocess, model_config)
    outputs = _output_order(tflite_bytes)
    expected = (
        dict.fromkeys(RAW_OUTPUTS) if postprocess == "numpy" else {name: i for i, name in enumerate(BUILTIN_OUTPUTS)}
    )
    if set(outputs) != set(expected) or (postprocess == "builtin" and outputs != expected):
        raise RuntimeError(f"converted model outputs {outputs}; expected {list(expected)}")
    height, width = model_config.input_size
    metadata = ModelMetadata(
        labels=tuple(labels),
        input_height=height,
        input_width=width,
        input_dtype="uint8" if quant == "int8" else "float32",
        alpha=model_config.alpha,
        anchors_config=model_config.anchors,
        anchors_sha256=anchors_sha256(model_config.generate_anchors()),
        anchor_code_version=ANCHOR_CODE_VERSION,
        num_anchors=model_config.num_anchors,
        variances=model_config.variances,
        outputs=outputs,
        postprocess=postprocess,
        quantization=quant,
        accuracy=dict(accuracy or {}),
    )
    return embed_metadata(tflite_bytes, metadata)
