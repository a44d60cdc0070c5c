"""train.evaluate: COCO mAP via pycocotools vs our VOC AP, and the model/predict_fn evaluation path."""

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest

from edge.boxes import center_to_corners, encode_boxes, iou_matrix
from edge.metrics import DetectionEvaluator
from train.config import ModelConfig
from train.evaluate import Detections, coco_map, evaluate_predictions, format_report, main

LABELS = ["circle", "square", "triangle"]
CONFIG = ModelConfig(alpha=0.25, input_size=(64, 64), num_classes=len(LABELS))


@dataclasses.dataclass
class Record:
    """Same fields as train.datasets.Record (docs/ARCHITECTURE.md)."""

    image_path: str
    boxes: np.ndarray
    classes: np.ndarray
    height: int
    width: int


def gt(boxes, classes, height=120, width=160):
    return Record("", np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int32), height, width)


def test_coco_map_hand_case():
    """1 class, 2 GT. d1 (.9) is exactly g1 (IoU 1); d2 (.8) is g2 shifted so IoU(d2, g2) = .42/.58 ~ .724.

    At IoU thresholds .50 .55 .60 .65 .70 both are TP: AP = 1.
    At .75 .80 .85 .90 .95 d2 is a FP: (P 1, R .5), (P .5, R .5); COCO samples precision at the 101
    recalls 0, .01, ..., 1: 51 of them (r <= .5) get 1, the rest 0 -> AP = 51/101.
    mAP@[.5:.95] = (5 * 1 + 5 * 51/101) / 10; AP50 = 1; AP75 = 51/101.
    """
    g1, g2 = [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.5, 0.5]
    d2 = [0.0, 0.08, 0.5, 0.58]
    assert iou_matrix(np.array([d2]), np.array([g2]))[0, 0] == pytest.approx(0.42 / 0.58, abs=1e-6)
    dets = [Detections(np.array([g1, d2], np.float32), np.array([0.9, 0.8]), np.array([0, 0]))]
    result = coco_map(dets, [gt([g1, g2], [0, 0])], ["thing"])
    assert result["ap50"] == pytest.approx(1.0)
    assert result["ap75"] == pytest.approx(51 / 101)
    assert result["map"] == pytest.approx((5 + 5 * 51 / 101) / 10)


def test_coco_map_edge_cases(capsys):
    box = [[0.1, 0.1, 0.5, 0.5]]
    no_dets = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert coco_map([no_dets], [gt(box, [1])], LABELS) == {"map": 0.0, "ap50": 0.0, "ap75": 0.0}
    assert all(math.isnan(v) for v in coco_map([no_dets], [gt(np.zeros((0, 4)), [])], LABELS).values())
    perfect = coco_map([Detections(np.array(box), np.array([0.5]), np.array([1]))], [gt(box, [1])], LABELS)
    assert perfect == {"map": pytest.approx(1.0), "ap50": pytest.approx(1.0), "ap75": pytest.approx(1.0)}
    assert "Accumulating" not in capsys.readouterr().out  # pycocotools' chatter is captured
    with pytest.raises(ValueError, match="detection lists"):
        coco_map([], [gt(box, [0])], LABELS)
    with pytest.raises(ValueError, match="ground-truth class 3"):
        coco_map([no_dets], [gt(box, [3])], LABELS)


def random_scene(rng, num_classes, keep_fraction):
    """GT boxes on a grid (never overlapping); detections: a jittered copy (IoU > .8) of a random subset,
    scored in [.5, 1), plus false positives away from every GT scored in [0, .4)."""
    cells = rng.permutation(16)[: int(rng.integers(1, 6))]
    ymin, xmin = (cells // 4) * 0.25 + 0.02, (cells % 4) * 0.25 + 0.02
    gt_boxes = np.stack([ymin, xmin, ymin + 0.2, xmin + 0.2], axis=-1)
    gt_classes = rng.integers(0, num_classes, size=len(gt_boxes))
    keep = rng.uniform(size=len(gt_boxes)) < keep_fraction
    tp_boxes = gt_boxes[keep] + rng.uniform(-0.005, 0.005, size=(int(keep.sum()), 4))
    num_fp = int(rng.integers(0, 3))
    fp_boxes = np.tile([0.005, 0.005, 0.015, 0.015], (num_fp, 1)) + rng.uniform(0, 0.002, size=(num_fp, 1))
    det_boxes = np.concatenate([tp_boxes, fp_boxes])
    det_scores = np.concatenate([rng.uniform(0.5, 1.0, size=len(tp_boxes)), rng.uniform(0, 0.4, size=num_fp)])
    det_classes = np.concatenate([gt_classes[keep], rng.integers(0, num_classes, size=num_fp)])
    return Detections(det_boxes, det_scores, det_classes), gt(gt_boxes, gt_classes)


@pytest.mark.parametrize("keep_fraction", [1.0, 0.6])
def test_voc_ap50_agrees_with_pycocotools(keep_fraction):
    """With every TP scored above every FP, both give AP = recall per class; COCO's 101-point sampling
    can only add less than 1/101 to it."""
    rng = np.random.default_rng(7)
    scenes = [random_scene(rng, len(LABELS), keep_fraction) for _ in range(30)]
    evaluator = DetectionEvaluator(len(LABELS))
    for dets, record in scenes:
        evaluator.add(*dets, record.boxes, record.classes)
    ours = evaluator.result()
    theirs = coco_map([d for d, _ in scenes], [r for _, r in scenes], LABELS)
    assert ours["map"] == pytest.approx(theirs["ap50"], abs=1 / 101)
    if keep_fraction == 1.0:
        assert ours["map"] == pytest.approx(1.0)
        assert theirs["ap50"] == pytest.approx(1.0)
    else:
        assert ours["map"] < 0.9  # the comparison is not between two trivial 1.0s
        for ap, recall in zip(ours["per_class_ap"], ours["per_class_recall"], strict=True):
            assert ap == pytest.approx(recall)


def best_anchor_targets(boxes, classes, anchors, num_classes):
    """Deltas (N, 4) and class probabilities (N, C+1) that decode exactly to ``boxes`` / ``classes``."""
    corners = center_to_corners(anchors)
    best = np.argmax(iou_matrix(np.asarray(boxes, np.float32), corners), axis=1)
    assert len(set(best.tolist())) == len(best), "test boxes must pick distinct anchors"
    deltas = np.zeros((len(anchors), 4), np.float32)
    deltas[best] = encode_boxes(np.asarray(boxes, np.float32), anchors[best])
    scores = np.zeros((len(anchors), num_classes + 1), np.float32)
    scores[:, 0] = 1.0
    scores[best, 0] = 0.01
    scores[best, np.asarray(classes) + 1] = 0.99
    return deltas, scores


def write_image(path, height=96, width=128):
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 2] = 255  # BGR red -> the model must see R = 255
    cv2.imwrite(str(path), image)
    return str(path)


SCENES = [
    ([[0.1, 0.1, 0.6, 0.5], [0.55, 0.6, 0.95, 0.95]], [0, 2]),
    ([[0.2, 0.3, 0.8, 0.9]], [1]),
    ([[0.05, 0.05, 0.45, 0.45], [0.5, 0.1, 0.9, 0.4], [0.2, 0.6, 0.7, 0.95]], [2, 1, 0]),
]


def test_evaluate_predictions_perfect_and_half(tmp_path):
    anchors = CONFIG.generate_anchors()
    records = [
        Record(write_image(tmp_path / f"{i}.jpg"), np.array(b, np.float32), np.array(c, np.int32), 96, 128)
        for i, (b, c) in enumerate(SCENES * 3)
    ]
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    records.insert(2, Record(str(tmp_path / "broken.jpg"), np.zeros((0, 4), np.float32), np.zeros(0, np.int32), 9, 9))
    targets = [best_anchor_targets(b, c, anchors, len(LABELS)) for b, c in SCENES * 3]
    seen = []

    def predict(batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == (64, 64, 3)
        assert batch[..., 0].min() > 240 and batch[..., 2].max() < 15  # RGB, 0..255
        start = len(seen)
        seen.extend(range(start, start + len(batch)))
        return np.stack([t[0] for t in targets[start : start + len(batch)]]), np.stack(
            [t[1] for t in targets[start : start + len(batch)]]
        )

    result = evaluate_predictions(predict, records, CONFIG, LABELS, batch_size=4, progress=False)
    assert len(seen) == 9
    assert result["num_images"] == 9
    assert result["skipped_images"] == [str(tmp_path / "broken.jpg")]
    assert result["map50"] == pytest.approx(1.0)
    assert result["per_class_ap50"] == {label: pytest.approx(1.0) for label in LABELS}
    assert result["num_gt"] == {"circle": 6, "square": 6, "triangle": 6}
    assert result["coco_map"] == pytest.approx(1.0)
    report = format_report(result)
    assert "mAP@0.5" in report and "triangle" in report

    # Drop every "square" prediction: its AP goes to 0, the others stay perfect.
    for _, scores in targets:
        scores[:, 2] = 0.0
    seen.clear()
    result = evaluate_predictions(predict, records, CONFIG, LABELS, batch_size=32, progress=False)
    assert result["per_class_ap50"] == {"circle": pytest.approx(1.0), "square": 0.0, "triangle": pytest.approx(1.0)}
    assert result["map50"] == pytest.approx(2 / 3)
    assert result["coco_ap50"] == pytest.approx(2 / 3, abs=1e-6)


def test_evaluate_predictions_rejects_bad_shapes(tmp_path):
    records = [Record(write_image(tmp_path / "a.jpg"), np.zeros((0, 4), np.float32), np.zeros(0, np.int32), 96, 128)]
    with pytest.raises(ValueError, match="num_anchors"):
        evaluate_predictions(
            lambda b: (np.zeros((len(b), 5, 4)), np.zeros((len(b), 5, 4))), records, CONFIG, LABELS, progress=False
        )
    with pytest.raises(ValueError, match="labels"):
        evaluate_predictions(lambda b: None, records, CONFIG, LABELS[:2], progress=False)


def constant_model(deltas, scores, as_dict):
    """A stock-layer Keras model whose outputs ignore the image: box_deltas = ``deltas``, class_scores ~ ``scores``."""
    import keras

    num_anchors, num_outputs = scores.shape
    image = keras.Input((*CONFIG.input_size, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    flat_deltas = keras.layers.Dense(num_anchors * 4, name="box_dense")(pooled)
    box_deltas = keras.layers.Reshape((num_anchors, 4), name="box_deltas")(flat_deltas)
    flat_logits = keras.layers.Dense(num_anchors * num_outputs, name="class_dense")(pooled)
    logits = keras.layers.Reshape((num_anchors, num_outputs), name="class_logits")(flat_logits)
    class_scores = keras.layers.Softmax(name="class_scores")(logits)
    outputs = {"box_deltas": box_deltas, "class_scores": class_scores} if as_dict else [box_deltas, class_scores]
    model = keras.Model(image, outputs)
    model.get_layer("box_dense").set_weights([np.zeros((3, num_anchors * 4)), deltas.reshape(-1)])
    logit_bias = np.log(np.clip(scores, 1e-6, 1.0)).reshape(-1)
    model.get_layer("class_dense").set_weights([np.zeros((3, num_anchors * num_outputs)), logit_bias])
    return model


@pytest.fixture(scope="module")
def keras_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keras_eval")
    boxes, classes = SCENES[0]
    anchors = CONFIG.generate_anchors()
    deltas, scores = best_anchor_targets(boxes, classes, anchors, len(LABELS))
    records = [
        Record(write_image(tmp / f"{i}.jpg"), np.array(boxes, np.float32), np.array(classes, np.int32), 96, 128)
        for i in range(5)
    ]
    return tmp, deltas, scores, records


@pytest.mark.parametrize("as_dict", [True, False])
def test_evaluate_model_keras(keras_setup, as_dict):
    from train.evaluate import evaluate_model

    _, deltas, scores, records = keras_setup
    model = constant_model(deltas, scores, as_dict)
    result = evaluate_model(model, records, CONFIG, LABELS, batch_size=2, progress=False)
    assert result["num_images"] == 5
    assert result["map50"] == pytest.approx(1.0)
    assert result["per_class_ap50"]["square"] is None  # no square in these images
    assert result["coco_map"] == pytest.approx(1.0, abs=1e-3)


def test_cli_reports_clear_errors(tmp_path, capsys):
    assert main(["--run", str(tmp_path / "missing")]) == 2
    assert "run.json" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": CONFIG.to_dict(), "labels": LABELS[:2], "data": "d"}))
    assert main(["--run", str(run)]) == 2
    assert "field 'labels'" in capsys.readouterr().err
    (run / "run.json").write_text(json.dumps({"model": CONFIG.to_dict(), "labels": LABELS, "data": "d"}))
    assert main(["--run", str(run), "--checkpoint", "last"]) == 2
    assert "last.keras" in capsys.readouterr().err


def write_voc(root, records, labels):
    """A minimal Pascal VOC layout (val split) for ``records`` (images already written elsewhere)."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    names = []
    for i, record in enumerate(records):
        name = f"img{i:03d}"
        names.append(name)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), cv2.imread(record.image_path))
        objects = "".join(
            f"<object><name>{labels[c]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{round(b[1] * record.width)}</xmin><ymin>{round(b[0] * record.height)}</ymin>"
            f"<xmax>{round(b[3] * record.width)}</xmax><ymax>{round(b[2] * record.height)}</ymax></bndbox></object>"
            for b, c in zip(record.boxes, record.classes, strict=True)
        )
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{record.width}</width>"
            f"<height>{record.height}</height><depth>3</depth></size>{objects}</annotation>"
        )
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(names) + "\n")


def test_cli_end_to_end(keras_setup, tmp_path, capsys):
    pytest.importorskip("train.datasets", reason="train.datasets (load_dataset) not available yet")
    _, deltas, scores, records = keras_setup
    data = tmp_path / "data"
    write_voc(data, records, LABELS)
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    constant_model(deltas, scores, as_dict=True).save(run / "best.keras")
    (run / "run.json").write_text(
        json.dumps({"model": CONFIG.to_dict(), "labels": LABELS, "data": str(data), "anchor_code_version": 1})
    )
    out = tmp_path / "eval.json"
    assert main(["--run", str(run), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mAP@0.5" in printed and "COCO mAP@[.5:.95]" in printed
    result = json.loads(out.read_text())
    assert result["num_images"] == len(records)
    assert result["map50"] == pytest.approx(1.0)
    assert result["coco_map"] > 0.5
