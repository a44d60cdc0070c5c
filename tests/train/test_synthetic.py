"""Synthetic dataset writer: determinism, Pascal VOC layout and XML, skip-if-complete, CLI."""

import json
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from edge.synthetic_scene import CLASS_NAMES
from train import synthetic
from train.datasets import load_dataset

ARGS = {"num_images": 14, "seed": 3, "width": 96, "height": 64, "progress": False}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return synthetic.generate_dataset(tmp_path_factory.mktemp("syn") / "data", **ARGS)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_dataset(dataset_dir, tmp_path):
    again = synthetic.generate_dataset(tmp_path / "again", **ARGS)
    assert _files(dataset_dir) == _files(again)
    other = synthetic.generate_dataset(tmp_path / "other", **{**ARGS, "seed": 4})
    a, b = _files(dataset_dir), _files(other)
    assert a["Annotations/000000.xml"] != b["Annotations/000000.xml"]
    assert a["JPEGImages/000000.jpg"] != b["JPEGImages/000000.jpg"]


def test_worker_processes_write_the_same_files(dataset_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "IMAGES_PER_JOB", 4)  # 14 images -> 4 blocks shared by 2 processes
    parallel = synthetic.generate_dataset(tmp_path / "parallel", **ARGS, workers=2)
    assert _files(parallel) == _files(dataset_dir)
    meta = json.loads((parallel / "synthetic.json").read_text())
    assert meta["stats"] == json.loads((dataset_dir / "synthetic.json").read_text())["stats"]


def test_image_depends_only_on_seed_and_index(tmp_path):
    small = synthetic.generate_dataset(tmp_path / "small", **{**ARGS, "num_images": 3})
    big = synthetic.generate_dataset(tmp_path / "big", **{**ARGS, "num_images": 5})
    for name in ("000000", "000002"):
        assert (small / f"Annotations/{name}.xml").read_bytes() == (big / f"Annotations/{name}.xml").read_bytes()


def test_voc_layout_and_splits(dataset_dir):
    ids = [f"{i:06d}" for i in range(ARGS["num_images"])]
    for image_id in ids:
        assert (dataset_dir / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (dataset_dir / "Annotations" / f"{image_id}.xml").is_file()
    train = (dataset_dir / "ImageSets/Main/train.txt").read_text().split()
    val = (dataset_dir / "ImageSets/Main/val.txt").read_text().split()
    assert sorted(train + val) == ids and not set(train) & set(val)
    assert len(val) == round(ARGS["num_images"] * 0.15)
    assert (dataset_dir / "labels.txt").read_text().split() == list(CLASS_NAMES)
    meta = json.loads((dataset_dir / "synthetic.json").read_text())
    assert meta["complete"] and meta["settings"]["seed"] == ARGS["seed"]


def test_annotation_xml_is_standard_voc_and_matches_scene(dataset_dir):
    for index in range(ARGS["num_images"]):
        name = f"{index:06d}"
        root = ET.parse(dataset_dir / "Annotations" / f"{name}.xml").getroot()
        assert root.tag == "annotation" and root.findtext("filename") == f"{name}.jpg"
        assert (root.findtext("size/width"), root.findtext("size/height"), root.findtext("size/depth")) == (
            "96",
            "64",
            "3",
        )
        image = cv2.imread(str(dataset_dir / "JPEGImages" / f"{name}.jpg"))
        assert image.shape == (64, 96, 3)
        scene = synthetic.scene_for_index(ARGS["seed"], index, 64, 96)
        objects = root.findall("object")
        assert len(objects) == len(scene.class_ids)
        for obj, box, class_id, truncated, difficult in zip(
            objects, scene.boxes, scene.class_ids, scene.truncated, scene.difficult, strict=True
        ):
            assert obj.findtext("name") == CLASS_NAMES[class_id]
            assert obj.findtext("pose") == "Unspecified" and obj.findtext("difficult") == str(int(difficult))
            assert obj.findtext("truncated") == str(int(truncated))
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin <= xmax <= 96 and 1 <= ymin <= ymax <= 64
            np.testing.assert_allclose([(ymin - 1) / 64, (xmin - 1) / 96, ymax / 64, xmax / 96], box, atol=1e-6)


def test_loader_reads_back_exact_boxes(dataset_dir):
    val = load_dataset(dataset_dir, "val")
    assert val.labels == list(CLASS_NAMES) and val.format == "voc"
    for record in val.records:
        index = int(record.image_path[-10:-4])
        scene = synthetic.scene_for_index(ARGS["seed"], index, 64, 96)
        np.testing.assert_allclose(record.boxes, scene.boxes, atol=1e-6)
        np.testing.assert_array_equal(record.classes, scene.class_ids)
    assert val.verify_images(progress=False) == 0


def test_complete_dataset_is_skipped_and_changed_arguments_regenerate(tmp_path):
    out = synthetic.generate_dataset(tmp_path / "d", **{**ARGS, "num_images": 6})
    first = out / "Annotations/000000.xml"
    first.write_text("sentinel")  # a skipped run must not touch it
    synthetic.generate_dataset(out, **{**ARGS, "num_images": 6})
    assert first.read_text() == "sentinel"
    synthetic.generate_dataset(out, **{**ARGS, "num_images": 4})
    assert first.read_text() != "sentinel"
    assert sorted(p.name for p in (out / "JPEGImages").iterdir()) == [f"{i:06d}.jpg" for i in range(4)]


def test_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="synthetic.json"):
        synthetic.generate_dataset(tmp_path, **ARGS)


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--num-images", "5", "--seed", "1", "--width", "64", "--height", "48"]
    assert synthetic.main(argv) == 0
    assert "wrote 5 images" in capsys.readouterr().out
    assert len(list((out / "Annotations").glob("*.xml"))) == 5
    assert synthetic.main(argv) == 0
    assert "already holds" in capsys.readouterr().out
    assert synthetic.main(["--out", str(out), "--num-images", "0"]) == 2
