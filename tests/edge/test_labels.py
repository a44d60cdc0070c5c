"""Labels files in the formats other tools read (edge.labels), and the files people already have."""

from __future__ import annotations

import pytest

from edge.labels import format_labels, parse_labels

LABELS = ["circle", "square", "traffic light"]


@pytest.mark.parametrize("label_format", ["index", "rpicam", "plain"])
def test_round_trip(label_format):
    assert parse_labels(format_labels(LABELS, label_format)) == LABELS


def test_formats_on_paper():
    assert format_labels(LABELS, "index") == "0 circle\n1 square\n2 traffic light\n"
    assert format_labels(LABELS, "rpicam") == "???\ncircle\nsquare\ntraffic light\n"
    with pytest.raises(ValueError, match="index, rpicam, plain"):
        format_labels(LABELS, "coco")
    with pytest.raises(ValueError, match="single lines"):
        format_labels(["a\nb"], "plain")


def test_files_in_the_wild():
    # TF1 zoo labelmap.txt: ??? is the background; person is class 0 of the model's outputs
    assert parse_labels("???\nperson\nbicycle\n") == ["person", "bicycle"]
    # pycoral coco_labels.txt style, with gaps (ids of the detection zoo skip some numbers)
    assert parse_labels("0  person\n1  bicycle\n3  motorcycle\n") == ["person", "bicycle", "class 2", "motorcycle"]
    assert parse_labels("0: cat\n1: dog\n") == ["cat", "dog"]
    assert parse_labels("\n\ncat\n\ndog\n") == ["cat", "dog"]
    with pytest.raises(ValueError, match="my.txt: no labels"):
        parse_labels("\n", source="my.txt")
    with pytest.raises(ValueError, match="index 1 appears twice"):
        parse_labels("0 a\n1 b\n1 c\n")
