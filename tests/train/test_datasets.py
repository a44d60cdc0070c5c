"""VOC and COCO loaders on small fixture datasets, including every bad-input case."""

import json

import cv2
import numpy as np
import pytest

from train.datasets import AnnotationError, Record, detect_format, load_dataset

W, H = 40, 30


def _write_image(path, width=W, height=H):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)


def _voc_xml(objects, width=W, height=H, filename=None, size=True):
    size_xml = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" if size else ""
    objs = ""
    for name, box, *rest in objects:
        fields = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=False))
        difficult = f"<difficult>{rest[0]}</difficult>" if rest else ""
        objs += f"<object><name>{name}</name>{difficult}<bndbox>{fields}</bndbox></object>"
    fname = f"<filename>{filename}</filename>" if filename else ""
    return f"<annotation>{fname}{size_xml}{objs}</annotation>"


def make_voc(root, annotations, split="train", labels=("cat", "dog"), images=None):
    """``annotations``: id -> XML text. Writes JPEGs for ``images`` ids (default: all)."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets/Main").mkdir(parents=True)
    for image_id, xml in annotations.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    for image_id in annotations if images is None else images:
        _write_image(root / "JPEGImages" / f"{image_id}.jpg")
    (root / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in annotations))
    if labels is not None:
        (root / "labels.txt").write_text("\n".join(labels) + "\n")
    return root


GOOD = {
    "a": _voc_xml([("dog", (1, 1, 20, 15)), ("cat", (11, 6, 40, 30), 1)], filename="a.jpg"),
    "b": _voc_xml([("cat", (5, 5, 10, 10))]),
}


def test_voc_good(tmp_path):
    data = load_dataset(make_voc(tmp_path / "voc", GOOD), "train")
    assert data.labels == ["cat", "dog"] and data.format == "voc" and not data.skipped
    a, b = data.records
    assert a.image_path.endswith("JPEGImages/a.jpg") and (a.height, a.width) == (H, W)
    np.testing.assert_allclose(a.boxes, [[0, 0, 15 / H, 20 / W], [5 / H, 10 / W, 1, 1]], atol=1e-6)
    assert a.boxes.dtype == np.float32 and a.classes.dtype == np.int32
    np.testing.assert_array_equal(a.classes, [1, 0])
    np.testing.assert_array_equal(a.difficult, [False, True])
    np.testing.assert_array_equal(b.classes, [0])
    assert data.class_counts() == {"cat": 2, "dog": 1}
    assert "Nothing was skipped" in data.summary()


def test_voc_labels_inferred_or_given(tmp_path):
    root = make_voc(tmp_path / "voc", GOOD, labels=None)
    assert load_dataset(root, "train").labels == ["cat", "dog"]
    given = load_dataset(root, "train", labels=["dog", "cat", "bird"])
    assert given.labels == ["dog", "cat", "bird"]
    np.testing.assert_array_equal(given.records[0].classes, [0, 1])


def test_voc_box_within_one_pixel_outside_is_clipped(tmp_path):
    root = make_voc(tmp_path / "voc", {"a": _voc_xml([("cat", (0, 0.5, W + 1, H + 0.5))])})
    np.testing.assert_allclose(load_dataset(root, "train").records[0].boxes, [[0, 0, 1, 1]])


BAD_VOC = [
    ("missing bndbox field", [("cat", (1, 1, 10))], "object[1]/bndbox/ymax", "missing_field"),
    ("non-numeric", [("cat", (1, "abc", 10, 10))], "object[1]/bndbox/ymin", "bad_value"),
    ("outside image", [("cat", (1, 1, W + 5, 10))], "object[1]/bndbox", "box_outside_image"),
    ("zero area", [("cat", (10, 5, 9, 10))], "object[1]/bndbox", "zero_area"),
    ("unknown class", [("horse", (1, 1, 10, 10))], "object[1]/name", "unknown_class"),
]


@pytest.mark.parametrize(("case", "bad", "field", "reason"), BAD_VOC, ids=[c[0] for c in BAD_VOC])
def test_voc_bad_object(tmp_path, case, bad, field, reason):
    xml = _voc_xml([("dog", (1, 1, 20, 15)), *bad])
    root = make_voc(tmp_path / "voc", {"a": xml, "b": GOOD["b"]})
    with pytest.raises(AnnotationError) as info:
        load_dataset(root, "train")
    message = str(info.value)
    assert "a.xml" in message and field in message and "expected" in message
    assert info.value.field == field and info.value.reason == reason
    data = load_dataset(root, "train", skip_bad=True)
    assert len(data.records) == 2 and len(data.records[0].classes) == 1  # the good object stays
    assert list(data.skipped) == [reason] and len(data.skipped[reason]) == 1
    assert "a.xml" in data.skipped[reason][0] and reason in data.summary()


@pytest.mark.parametrize(
    ("xml", "field", "reason"),
    [
        (_voc_xml([("cat", (1, 1, 5, 5))], size=False), "size", "missing_field"),
        ("<annotation><size><width>40</width></size></annotation>", "size/height", "missing_field"),
        (_voc_xml([("cat", (1, 1, 5, 5))], width="wide"), "size/width", "bad_value"),
        ("<annotation><size>", "xml", "unreadable_annotation"),
    ],
)
def test_voc_bad_file_is_skipped_whole(tmp_path, xml, field, reason):
    root = make_voc(tmp_path / "voc", {"a": xml, "b": GOOD["b"]})
    with pytest.raises(AnnotationError, match=f"a.xml: {field}"):
        load_dataset(root, "train")
    data = load_dataset(root, "train", skip_bad=True)
    assert [r.image_path[-5:] for r in data.records] == ["b.jpg"]
    assert len(data.skipped[reason]) == 1


def test_voc_missing_image_and_missing_split(tmp_path):
    root = make_voc(tmp_path / "voc", GOOD, images=["b"])
    data = load_dataset(root, "train")
    assert len(data.records) == 1 and len(data.skipped["missing_image"]) == 1
    with pytest.raises(FileNotFoundError, match=r"val.txt.*Available splits: \['train'\]"):
        load_dataset(root, "val")


def test_corrupt_images_are_dropped_and_counted(tmp_path):
    ids = {f"i{k}": GOOD["b"] for k in range(4)}
    root = make_voc(tmp_path / "voc", ids)
    jpeg = (root / "JPEGImages/i1.jpg").read_bytes()
    (root / "JPEGImages/i1.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    (root / "JPEGImages/i2.jpg").write_bytes(b"this is not an image")
    _write_image(root / "JPEGImages/i3.jpg", width=W + 2)  # annotation says 40 wide
    data = load_dataset(root, "train")
    assert len(data.records) == 4
    assert data.verify_images(progress=False) == 3
    assert [r.image_path[-6:] for r in data.records] == ["i0.jpg"]
    assert len(data.skipped["corrupt_image"]) == 2 and len(data.skipped["size_mismatch"]) == 1
    assert "truncated" in " ".join(data.skipped["corrupt_image"])
    summary = data.summary()
    assert "corrupt_image" in summary and "3 items" in summary and "i1.jpg" in summary


# ----------------------------------------------------------------------------- COCO


def _coco(annotations, images=None, categories=None):
    return {
        "images": images
        if images is not None
        else [
            {"id": 10, "file_name": "x.jpg", "width": W, "height": H},
            {"id": 11, "file_name": "y.jpg", "width": W, "height": H},
        ],
        "annotations": annotations,
        "categories": categories or [{"id": 7, "name": "zebra"}, {"id": 3, "name": "ant"}],
    }


GOOD_ANNS = [
    {"id": 1, "image_id": 10, "category_id": 7, "bbox": [4, 3, 20, 15], "iscrowd": 0},
    {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 40, 30]},
    {"id": 3, "image_id": 11, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 1},
]


def make_coco(root, data, split="train"):
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    for image in data["images"]:
        _write_image(root / "images" / split / image["file_name"])
    return root


def test_coco_folder_and_json_file(tmp_path):
    root = make_coco(tmp_path / "coco", _coco(GOOD_ANNS))
    for path in (root, root / "annotations/instances_train.json"):
        data = load_dataset(path, "train")
        assert data.format == "coco" and data.labels == ["ant", "zebra"]  # category-id order
        x, y = data.records
        assert x.image_path.endswith("images/train/x.jpg")
        np.testing.assert_allclose(x.boxes, [[3 / H, 4 / W, 18 / H, 24 / W], [0, 0, 1, 1]], atol=1e-6)
        np.testing.assert_array_equal(x.classes, [1, 0])
        assert len(y.classes) == 0  # crowd region skipped
        assert not data.skipped


BAD_COCO = [
    ("missing bbox", {"image_id": 10, "category_id": 7}, "annotations[1] (id 9).bbox", "missing_field"),
    ("non-numeric", {"image_id": 10, "category_id": 7, "bbox": [1, "x", 2, 2]}, ".bbox[1]", "bad_value"),
    ("short bbox", {"image_id": 10, "category_id": 7, "bbox": [1, 2, 3]}, ".bbox", "bad_value"),
    ("outside", {"image_id": 10, "category_id": 7, "bbox": [30, 2, 15, 5]}, ".bbox (x.jpg)", "box_outside_image"),
    ("zero area", {"image_id": 10, "category_id": 7, "bbox": [3, 2, 0, 5]}, ".bbox (x.jpg)", "zero_area"),
    ("unknown class", {"image_id": 10, "category_id": 99, "bbox": [1, 1, 5, 5]}, ".category_id", "unknown_class"),
]


@pytest.mark.parametrize(("case", "bad", "field", "reason"), BAD_COCO, ids=[c[0] for c in BAD_COCO])
def test_coco_bad_annotation(tmp_path, case, bad, field, reason):
    root = make_coco(tmp_path / "coco", _coco([GOOD_ANNS[0], {"id": 9, **bad}]))
    with pytest.raises(AnnotationError) as info:
        load_dataset(root, "train")
    message = str(info.value)
    assert "instances_train.json" in message and "annotations[1] (id 9)" in message and field in message
    assert "expected" in message and info.value.reason == reason
    data = load_dataset(root, "train", skip_bad=True)
    assert [len(r.classes) for r in data.records] == [1, 0]
    assert list(data.skipped) == [reason] and "instances_train.json" in data.skipped[reason][0]


def test_coco_bad_image_entry_and_missing_image(tmp_path):
    images = [
        {"id": 10, "file_name": "x.jpg", "width": W, "height": H},
        {"id": 11, "file_name": "y.jpg", "height": H},
        {"id": 12, "file_name": "gone.jpg", "width": W, "height": H},
    ]
    data = _coco(GOOD_ANNS[:2] + [{"id": 5, "image_id": 11, "category_id": 7, "bbox": [1, 1, 4, 4]}], images=images)
    root = make_coco(tmp_path / "coco", data)
    (root / "images/train/gone.jpg").unlink()
    with pytest.raises(AnnotationError, match=r"instances_train.json: images\[1\].width"):
        load_dataset(root, "train")
    loaded = load_dataset(root, "train", skip_bad=True)
    assert [r.image_path[-5:] for r in loaded.records] == ["x.jpg"]
    assert len(loaded.skipped["missing_field"]) == 1 and len(loaded.skipped["missing_image"]) == 1


def test_coco_labels_argument_maps_by_name(tmp_path):
    root = make_coco(tmp_path / "coco", _coco(GOOD_ANNS))
    data = load_dataset(root, "train", labels=["zebra", "ant"])
    np.testing.assert_array_equal(data.records[0].classes, [0, 1])
    with pytest.raises(AnnotationError, match="category_id"):
        load_dataset(root, "train", labels=["zebra"])


# ----------------------------------------------------------------------------- format detection and errors


def test_format_detection_and_choices(tmp_path):
    voc = make_voc(tmp_path / "voc", GOOD)
    coco = make_coco(tmp_path / "coco", _coco(GOOD_ANNS))
    assert detect_format(voc) == "voc"
    assert detect_format(coco) == "coco"
    assert detect_format(coco / "annotations/instances_train.json") == "coco"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the dataset format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(ValueError, match="auto, voc, coco"):
        load_dataset(voc, "train", fmt="yolo")
    assert load_dataset(voc, "train", fmt="voc").format == "voc"
    with pytest.raises(FileNotFoundError, match="instances_val.json"):
        load_dataset(coco, "val", fmt="coco")


def test_missing_path_explains_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(tmp_path / "nope", "train")
    message = str(info.value)
    assert "nope" in message and "train.synthetic" in message and "VOC" in message and "COCO" in message
    assert "download" in message


def test_record_validates_lengths():
    with pytest.raises(ValueError, match="2 boxes but 1 classes"):
        Record("x.jpg", np.zeros((2, 4)), [0], 10, 10)


def test_coco_duplicate_image_id_is_refused_naming_the_field(tmp_path):
    images = [
        {"id": 10, "file_name": "x.jpg", "width": W, "height": H},
        {"id": 11, "file_name": "y.jpg", "width": W, "height": H},
        {"id": 10, "file_name": "z.jpg", "width": W, "height": H},
    ]
    root = make_coco(tmp_path / "coco", _coco(GOOD_ANNS, images=images))
    with pytest.raises(AnnotationError) as info:
        load_dataset(root, "train")
    assert info.value.field == "images[2].id" and info.value.reason == "duplicate_id"
    assert str(info.value).startswith(f"{root / 'annotations/instances_train.json'}: images[2].id:")
    assert "10" in str(info.value) and "images[0]" in str(info.value)
    # with --skip-bad both entries go (their annotations cannot be told apart) and are counted
    data = load_dataset(root, "train", skip_bad=True)
    assert [r.image_path[-5:] for r in data.records] == ["y.jpg"]
    assert len(data.skipped["duplicate_id"]) == 2


@pytest.mark.parametrize("bad_id", [[10], {"n": 10}, None, True, 1.5])
def test_coco_non_scalar_ids_are_an_error_or_skipped_not_a_crash(tmp_path, bad_id):
    images = [
        {"id": bad_id, "file_name": "x.jpg", "width": W, "height": H},
        {"id": 11, "file_name": "y.jpg", "width": W, "height": H},
    ]
    annotations = [{"id": 1, "image_id": 11, "category_id": 7, "bbox": [1, 1, 5, 5]}]
    root = make_coco(tmp_path / "coco", _coco(annotations, images=images))
    with pytest.raises(AnnotationError, match=r"instances_train.json: images\[0\].id: expected an integer id"):
        load_dataset(root, "train")
    data = load_dataset(root, "train", skip_bad=True)
    assert [r.image_path[-5:] for r in data.records] == ["y.jpg"] and len(data.records[0].classes) == 1
    assert (
        data.skipped == {"bad_value": [data.skipped["bad_value"][0]]} and "images[0].id" in data.skipped["bad_value"][0]
    )


@pytest.mark.parametrize("key", ["image_id", "category_id"])
def test_coco_annotation_with_a_list_id_is_an_error_or_skipped(tmp_path, key):
    bad = {"id": 9, "image_id": 10, "category_id": 7, "bbox": [1, 1, 5, 5], key: [10]}
    root = make_coco(tmp_path / "coco", _coco([GOOD_ANNS[0], bad]))
    with pytest.raises(AnnotationError, match=rf"annotations\[1\] \(id 9\).{key}: expected an integer id"):
        load_dataset(root, "train")
    data = load_dataset(root, "train", skip_bad=True)
    assert [len(r.classes) for r in data.records] == [1, 0]
    assert len(data.skipped["bad_value"]) == 1
