"""Standard SSD models made elsewhere run in edge.Detector: both output orders, signatures, uint8/float inputs, labels.

The models are built here, independently of ``convert/``, the way the TF Object Detection API's TFLite
export builds them (``export_tflite_graph_lib_tf2.SSDModule``): a ``tf.function`` whose post-processing is a
composite function with ``experimental_implements`` = ``TFLite_Detection_PostProcess``. The "network" is
hand-made so detections can be checked on paper: 16 anchors on a 4x4 grid of the 32x32 input, box
encodings 0 (boxes = anchors), and class ``c``'s score at anchor ``i`` = ``sigmoid(5 * mean of channel c over
cell i)`` of the input normalized to [-1, 1]. A pure red cell scores ~0.99 for class 0 ("red") and ~0.007
for the others; a black cell (-1 everywhere) scores ~0.007: wrong input normalization shows.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile

import numpy as np
import pytest

from edge.detector import Detector
from edge.runtime import ModelLoadError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is needed to build the test models"
)

SIZE = 32
LABELS = ["red", "green", "blue"]
POSTPROCESS = " ".join(
    [
        'name: "TFLite_Detection_PostProcess"',
        'attr { key: "max_detections" value { i: 10 } }',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        'attr { key: "detections_per_class" value { i: 10 } }',
        'attr { key: "use_regular_nms" value { b: false } }',
        'attr { key: "nms_score_threshold" value { f: 1e-8 } }',
        'attr { key: "nms_iou_threshold" value { f: 0.6 } }',
        'attr { key: "y_scale" value { f: 10.0 } }',
        'attr { key: "x_scale" value { f: 10.0 } }',
        'attr { key: "h_scale" value { f: 5.0 } }',
        'attr { key: "w_scale" value { f: 5.0 } }',
        'attr { key: "num_classes" value { i: 3 } }',
    ]
)
TF1 = ("boxes", "classes", "scores", "count")
TF2 = ("scores", "boxes", "count", "classes")


def _anchors() -> np.ndarray:
    centers = (np.arange(4) + 0.5) / 4
    cy, cx = np.meshgrid(centers, centers, indexing="ij")
    return np.stack([cy.ravel(), cx.ravel(), np.full(16, 0.25), np.full(16, 0.25)], axis=1).astype(np.float32)


def _ssd_module(signature_names: bool):
    """The ``SSDModule`` pattern: ``(1, 32, 32, 3)`` float32 in [-1, 1] -> the op's four outputs."""
    import tensorflow as tf

    anchors = tf.constant(_anchors())

    @tf.function(experimental_implements=POSTPROCESS)
    def postprocess(box_encodings, class_predictions, anchors):
        boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
        classes = tf.constant(0.0, dtype=tf.float32, name="classes")
        scores = tf.constant(0.0, dtype=tf.float32, name="scores")
        count = tf.constant(0.0, dtype=tf.float32, name="num_detections")
        return boxes, classes, scores, count

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    def serve(image):
        cells = tf.reshape(tf.nn.avg_pool2d(image, 8, 8, "VALID"), [1, 16, 3])
        scores = tf.concat([tf.zeros([1, 16, 1]), tf.sigmoid(5.0 * cells)], axis=-1)
        boxes, classes, scores, count = postprocess(tf.zeros([1, 16, 4]), scores, anchors)
        if signature_names:  # the TF2 OD API export's names, as pycoral reads them
            return {"output_0": count, "output_1": scores, "output_2": classes, "output_3": boxes}
        return boxes, classes, scores, count

    return serve


def _calibration():
    rng = np.random.default_rng(0)
    for _ in range(8):
        yield [rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)]
    yield [np.full((1, SIZE, SIZE, 3), -1.0, np.float32)]
    yield [np.full((1, SIZE, SIZE, 3), 1.0, np.float32)]


def build_standard_ssd(order: tuple[str, ...] = TF1, signature: bool = False, uint8: bool = False) -> bytes:
    """A standard SSD ``.tflite``: outputs listed in ``order``; the serving signature kept only if ``signature``."""
    import tempfile

    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema

    from convert.metadata_writer import pack_model

    serve = _ssd_module(signature_names=signature)
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(tf.Module(), folder, signatures={"serving_default": serve.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.allow_custom_ops = True
        if uint8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _calibration
            converter.inference_input_type = tf.uint8
        data = bytes(converter.convert())
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    (signature_def,) = model.signatureDefs
    names = {"output_0": "count", "output_1": "scores", "output_2": "classes", "output_3": "boxes"}
    by_name = {}
    for entry in signature_def.outputs:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        by_name[names.get(name, name)] = entry.tensorIndex
    if not signature:  # tuple outputs are output_0..3 in return order: boxes, classes, scores, count
        by_name = dict(zip(TF1, (by_name[n] for n in ("count", "scores", "classes", "boxes")), strict=True))
        model.signatureDefs = []  # like a TOCO-converted TF1 model
    model.subgraphs[0].outputs = np.array([by_name[name] for name in order], dtype=np.int32)
    return pack_model(model, size_hint=len(data))


def _frame(cells: dict[tuple[int, int], tuple[int, int, int]]) -> np.ndarray:
    """A 64x64 RGB frame, black except the given 4x4-grid cells (row, col) -> color."""
    frame = np.zeros((64, 64, 3), np.uint8)
    for (row, col), color in cells.items():
        frame[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = color
    return frame


GOLDEN = _frame({(0, 0): (255, 0, 0), (2, 3): (0, 0, 255)})


def _check_golden(detector: Detector) -> None:
    result = detector(GOLDEN)
    assert result.names == ["red", "blue"] or result.names == ["blue", "red"]
    by_name = dict(zip(result.names, result.pixel_boxes().tolist(), strict=True))
    np.testing.assert_allclose(by_name["red"], [0, 0, 16, 16], atol=0.5)
    np.testing.assert_allclose(by_name["blue"], [48, 32, 64, 48], atol=0.5)
    assert (result.scores > 0.95).all()


@pytest.fixture(scope="module")
def labelmap(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "labelmap.txt"
    path.write_text("???\n" + "\n".join(LABELS) + "\n")
    return path


@pytest.mark.parametrize(
    ("order", "signature"), [(TF1, False), (TF2, False), (TF1, True), (TF2, True)], ids=["tf1", "tf2", "sig1", "sig2"]
)
def test_float_models_in_both_orders(order, signature, labelmap, tmp_path):
    path = tmp_path / "detect.tflite"
    path.write_bytes(build_standard_ssd(order, signature))
    detector = Detector(path, labels=labelmap, score_threshold=0.5)
    assert detector.metadata is None and detector.labels == LABELS
    expected = "signature names" if signature else ("TF1 order" if order == TF1 else "TF2 order")
    assert expected in detector.source_description and "[-1, 1]" in detector.source_description
    _check_golden(detector)


def test_uint8_model_gets_camera_bytes(labelmap, tmp_path):
    path = tmp_path / "detect_quant.tflite"
    path.write_bytes(build_standard_ssd(TF1, uint8=True))
    detector = Detector(path, labels=LABELS, score_threshold=0.5)
    assert detector.preprocess(GOLDEN).dtype == np.uint8
    assert "camera bytes" in detector.source_description
    _check_golden(detector)


def test_normalization_from_arguments(labelmap, tmp_path):
    path = tmp_path / "detect.tflite"
    path.write_bytes(build_standard_ssd(TF1))
    # Pixels taken as [0, 1] instead of [-1, 1]: black cells score sigmoid(0) = 0.5 for every class.
    detector = Detector(path, labels=labelmap, input_mean=0.0, input_std=255.0, score_threshold=0.45)
    assert len(detector(GOLDEN)) > 2
    with pytest.raises(ModelLoadError, match="go together"):
        Detector(path, labels=labelmap, input_mean=0.0)


def _tflite_metadata(mean: float, std: float, labels_file: str) -> bytes:
    """A minimal ``TFLITE_METADATA`` flatbuffer (tflite-support metadata_schema.fbs), written field by field."""
    import flatbuffers

    b = flatbuffers.Builder(256)

    def table(fields):  # fields: [(slot, kind, value)]
        b.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, kind, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "byte":
                b.PrependInt8Slot(slot, value, 0)
            else:
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def vector(offsets):
        b.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            b.PrependUOffsetTRelative(offset)
        return b.EndVector()

    def floats(values):
        b.StartVector(4, len(values), 4)
        for value in reversed(values):
            b.PrependFloat32(value)
        return b.EndVector()

    name = b.CreateString(labels_file)
    labels = table([(0, "offset", name), (2, "byte", 3)])  # AssociatedFile {name, type: TENSOR_VALUE_LABELS}
    mean_vector, std_vector = floats([mean]), floats([std])
    normalization = table([(0, "offset", mean_vector), (1, "offset", std_vector)])
    unit = table([(0, "ubyte", 1), (1, "offset", normalization)])  # ProcessUnit {options: NormalizationOptions}
    units = vector([unit])
    image = table([(4, "offset", units)])  # TensorMetadata {process_units}
    files = vector([labels])
    outputs = [table([(1, "offset", b.CreateString(n))]) for n in ("boxes",)]
    outputs.append(table([(6, "offset", files)]))  # classes: TensorMetadata {associated_files}
    outputs += [table([(1, "offset", b.CreateString(n))]) for n in ("scores", "count")]
    inputs_vector, outputs_vector = vector([image]), vector(outputs)
    subgraph = table([(2, "offset", inputs_vector), (3, "offset", outputs_vector)])
    subgraphs = vector([subgraph])
    root = table([(3, "offset", subgraphs)])
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def test_labels_and_normalization_from_tflite_metadata(tmp_path, capsys):
    from convert.metadata_writer import embed_metadata
    from edge.cli import main

    model = embed_metadata(build_standard_ssd(TF2), _tflite_metadata(127.5, 127.5, "labelmap.txt"), "TFLITE_METADATA")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("labelmap.txt", "???\n" + "\n".join(LABELS) + "\n")
    path = tmp_path / "with_metadata.tflite"
    path.write_bytes(model + archive.getvalue())  # the metadata writer appends the associated files as a zip
    detector = Detector(path, score_threshold=0.5)
    assert detector.labels == LABELS and "NormalizationOptions" in detector.source_description
    _check_golden(detector)

    assert main(["info", "--model", str(path)]) == 0
    import json

    info = json.loads(capsys.readouterr().out)["standard_ssd"]
    assert info["labels"] == LABELS and info["outputs"] == {"scores": 0, "boxes": 1, "count": 2, "classes": 3}
    assert info["input"]["normalization"]["mean"] == [127.5] and info["max_detections"] == 10


def test_no_labels_and_not_an_ssd(tmp_path):
    path = tmp_path / "detect.tflite"
    path.write_bytes(build_standard_ssd(TF1))
    with pytest.raises(ModelLoadError, match="pass labels"):
        Detector(path)


def test_edge_run_with_labels_file(labelmap, tmp_path):
    import json

    import cv2

    from edge.cli import main

    path = tmp_path / "detect.tflite"
    path.write_bytes(build_standard_ssd(TF2, signature=True))
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "golden.png"), cv2.cvtColor(GOLDEN, cv2.COLOR_RGB2BGR))
    jsonl = tmp_path / "out.jsonl"
    args = ["run", "--model", str(path), "--labels", str(labelmap), "--source", str(folder), "--frames", "1"]
    assert main([*args, "--jsonl", str(jsonl), "--quiet"]) == 0
    (line,) = [json.loads(text) for text in jsonl.read_text().splitlines()]
    assert sorted(det["label"] for det in line["detections"]) == ["blue", "red"]


def build_yolo(pixel_boxes: bool = False) -> bytes:
    """An Ultralytics-style export: ``(1, 32, 32, 3)`` float in [0, 1] -> one ``(1, 4 + 3, 16)`` output."""
    import tensorflow as tf

    anchors = _anchors()  # cy, cx, h, w
    xywh = np.stack([anchors[:, 1], anchors[:, 0], anchors[:, 3], anchors[:, 2]]) * (SIZE if pixel_boxes else 1)

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    def serve(image):
        cells = tf.reshape(tf.nn.avg_pool2d(image, 8, 8, "VALID"), [1, 16, 3])
        scores = tf.transpose(tf.sigmoid(10.0 * (cells - 0.5)), [0, 2, 1])  # (1, 3, 16)
        return tf.concat([tf.constant(xywh[None], tf.float32), scores], axis=1)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve)
    return bytes(converter.convert())


@pytest.mark.parametrize("pixel_boxes", [False, True], ids=["normalized", "pixels"])
def test_yolo_export(pixel_boxes, labelmap, tmp_path):
    path = tmp_path / "yolo.tflite"
    path.write_bytes(build_yolo(pixel_boxes))
    detector = Detector(path, labels=labelmap, score_threshold=0.5)
    assert detector.postprocess_mode == "yolo" and "[0, 1]" in detector.source_description
    _check_golden(detector)
    with pytest.raises(ModelLoadError, match="2 names, the YOLO output has 3 classes"):
        Detector(path, labels=["a", "b"])


def test_edge_info_on_a_yolo_export(tmp_path, capsys):
    import json

    from edge.cli import main

    path = tmp_path / "yolo.tflite"
    path.write_bytes(build_yolo())
    assert main(["info", "--model", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)["standard_ssd"]
    assert info["kind"].startswith("YOLO") and info["input"]["normalization"]["std"] == [255.0]
