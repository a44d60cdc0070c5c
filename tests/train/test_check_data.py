"""python -m train.check_data on small broken datasets: every problem listed at once, file and field named."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.train.test_datasets import GOOD, GOOD_ANNS, H, W, _coco, _voc_xml, make_coco, make_voc
from train.check_data import check_dataset, main

ROOT = Path(__file__).resolve().parents[2]


def _broken_voc(root):
    annotations = {
        "a": _voc_xml([("cat", (1, "abc", 10, 10)), ("horse", (1, 1, 10, 10))]),  # two bad objects
        "b": _voc_xml([("cat", (5, 5, 10, 10))], size=False),  # no <size>
        "c": GOOD["b"],  # image missing
        "d": GOOD["b"],  # corrupt image
        "e": GOOD["a"],
    }
    root = make_voc(root, annotations, images=["a", "b", "d", "e"])
    (root / "JPEGImages/d.jpg").write_bytes(b"not an image")
    (root / "ImageSets/Main/val.txt").write_text("e\nf\n")  # f has no annotation file
    return root


def test_every_problem_of_every_split_is_listed(tmp_path, capsys):
    root = _broken_voc(tmp_path / "voc")
    problems, datasets = check_dataset(root)
    found = {(p.split, p.reason, p.detail.split(": ")[0].rsplit("/", 1)[-1], p.detail.split(": ")[1]) for p in problems}
    assert found == {
        ("train", "bad_value", "a.xml", "object[0]/bndbox/ymin"),
        ("train", "unknown_class", "a.xml", "object[1]/name"),
        ("train", "missing_field", "b.xml", "size"),
        ("train", "missing_image", "c.xml", "filename"),
        ("train", "corrupt_image", "d.jpg", "not a JPEG, PNG, BMP or GIF file"),
        ("val", "missing_field", "f.xml", "file"),
    }
    assert all("expected" in p.detail for p in problems if p.reason != "corrupt_image")
    assert [len(d.records) for d in datasets.values()] == [2, 1]  # train: a (one good object left) and e

    assert main(["--data", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(problems) + 1 and out[-1].startswith(f"{root}: 6 problems")
    assert any(line.startswith("train: ") and "a.xml: object[0]/bndbox/ymin: expected a number" in line for line in out)


def test_a_clean_dataset_exits_0(tmp_path, capsys):
    root = make_voc(tmp_path / "voc", GOOD)
    assert main(["--data", str(root), "--format", "voc"]) == 0
    assert capsys.readouterr().out.strip() == f"{root}: no problems (train 2 images / 3 objects)"


def test_coco_problems_including_duplicate_and_list_ids(tmp_path, capsys):
    images = [
        {"id": 10, "file_name": "x.jpg", "width": W, "height": H},
        {"id": [11], "file_name": "y.jpg", "width": W, "height": H},
        {"id": 10, "file_name": "z.jpg", "width": W, "height": H},
        {"id": 12, "file_name": "w.jpg", "width": W, "height": H},
    ]
    bad_ann = {"id": 9, "image_id": 12, "category_id": {"id": 7}, "bbox": [1, 1, 5, 5]}
    root = make_coco(tmp_path / "coco", _coco([*GOOD_ANNS, bad_ann], images=images))
    assert main(["--data", str(root), "--format", "coco"]) == 1
    out = capsys.readouterr().out
    assert "images[1].id: expected an integer id, got list [11]" in out
    assert "images[2].id: expected a unique image id, got 10 again (first at images[0])" in out
    assert "images[0].id: expected a unique image id" in out  # both entries of id 10 are dropped
    assert "annotations[3] (id 9).category_id: expected an integer id, got dict" in out
    assert "4 problems (usable: train 1 images / 0 objects)" in out


def test_a_path_that_is_not_a_dataset_exits_2(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nope")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no dataset at") and "nope" in line


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_check_data_runs_the_checker():
    command = ["make", "-n", "--no-print-directory", "check-data", "DATA=some/data", "FORMAT=coco"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "-m train.check_data --data some/data --format coco" in out
