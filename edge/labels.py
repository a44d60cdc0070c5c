"""Labels files as other detection tools write and read them. Text in, text out; no file I/O.

Formats (``LABEL_FORMATS``), each for class ids 0-based with the background excluded (the ids our models
and ``TFLite_Detection_PostProcess`` give):

* ``index`` — ``0 circle`` per line: picamera2's TFLite examples (``ReadLabelFile`` splits each line into
  an int and a name) and pycoral's ``read_label_file`` (``0 circle`` or ``0: circle``).
* ``rpicam`` — first line ``???``, then one name per line: rpicam-apps' ``object_detect_tf`` stage
  discards the first line and indexes the rest by class id (the TF1 ``labelmap.txt`` layout).
* ``plain`` — one name per line.

:func:`parse_labels` reads all three, plus ``0: circle``, and drops a leading ``???`` (a background
placeholder, as in ``labelmap.txt``) so that index 0 is the first object class.
"""

from __future__ import annotations

import re

LABEL_FORMATS = ("index", "rpicam", "plain")
BACKGROUND_PLACEHOLDER = "???"
_INDEXED = re.compile(r"^\s*(\d+)\s*[:\s]\s*(.*?)\s*$")


def format_labels(labels: list[str] | tuple[str, ...], label_format: str = "index") -> str:
    """``labels`` (class id order) -> the text of a labels file in ``label_format``, ending in a newline."""
    bad = [name for name in labels if not name.strip() or "\n" in name or name != name.strip()]
    if bad:
        raise ValueError(f"labels: names must be non-empty single lines without surrounding spaces, got {bad!r}")
    if label_format == "index":
        lines = [f"{i} {name}" for i, name in enumerate(labels)]
    elif label_format == "rpicam":
        lines = [BACKGROUND_PLACEHOLDER, *labels]
    elif label_format == "plain":
        lines = list(labels)
    else:
        raise ValueError(f"unknown labels format {label_format!r}; expected one of {', '.join(LABEL_FORMATS)}")
    return "\n".join(lines) + "\n"


def parse_labels(text: str, source: str = "labels") -> list[str]:
    """A labels file's text -> names by class id (0-based, background excluded).

    ``index <name>`` / ``index: <name>`` lines are placed at their index (gaps become ``"class <i>"``);
    otherwise each non-empty line is one name. A first entry ``???`` is a background placeholder and is
    dropped, so ``labelmap.txt`` of the TF1 detection zoo (``???``, person, bicycle, ...) gives person = 0.
    Raises ``ValueError`` naming ``source`` when there are no labels or indexed lines repeat an index.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{source}: no labels found; expected one name per line or 'index name' lines")
    matches = [_INDEXED.match(line) for line in lines]
    if all(matches) and all(m.group(2) for m in matches):
        by_index: dict[int, str] = {}
        for m in matches:
            index = int(m.group(1))
            if index in by_index:
                raise ValueError(f"{source}: index {index} appears twice")
            by_index[index] = m.group(2)
        names = [by_index.get(i, f"class {i}") for i in range(max(by_index) + 1)]
        if names[0] == BACKGROUND_PLACEHOLDER:
            names = names[1:]
    else:
        names = lines[1:] if lines[0] == BACKGROUND_PLACEHOLDER else lines
    if not names:
        raise ValueError(f"{source}: only a background placeholder, no object labels")
    return names
