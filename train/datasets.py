"""Detection dataset loaders: Pascal VOC (XML) and COCO (instances JSON) -> one ``Dataset`` contract.

``load_dataset(path, split, fmt="auto", labels=None, skip_bad=False) -> Dataset`` with
``Dataset.labels`` (class names, index = 0-based class id), ``Dataset.records`` (one ``Record`` per
image) and ``Dataset.skipped`` (reason -> list of ``"file: detail"``).

Box conventions:

* ``Record.boxes`` are ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax``;
* VOC ``bndbox`` is 1-based inclusive pixels: ``xmin..xmax`` covers pixel edges ``[xmin - 1, xmax)``;
* COCO ``bbox`` is ``[x, y, width, height]`` in 0-based continuous pixels: edges ``[x, x + width)``.

A box that leaves the image by at most 1 pixel is clipped; anything worse, a missing or non-numeric
field, zero or negative area, an unknown class, or a COCO id that is not an integer/string or (for
images) not unique raises ``AnnotationError`` naming the file, the field
and what was expected — or, with ``skip_bad=True``, the object (or the whole file, for file-level
problems) is dropped and counted in ``Dataset.skipped``. Missing image files are always skipped and
counted; ``Dataset.verify_images`` drops images that cannot be decoded.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)

FORMATS = ("auto", "voc", "coco")
BOX_TOLERANCE_PX = 1.0
"""Boxes may leave the image by this many pixels; they are clipped instead of rejected."""

# Skip reasons (keys of Dataset.skipped).
MISSING_FIELD = "missing_field"
BAD_VALUE = "bad_value"
BOX_OUTSIDE_IMAGE = "box_outside_image"
ZERO_AREA = "zero_area"
UNKNOWN_CLASS = "unknown_class"
UNREADABLE_ANNOTATION = "unreadable_annotation"
MISSING_IMAGE = "missing_image"
CORRUPT_IMAGE = "corrupt_image"
SIZE_MISMATCH = "size_mismatch"
DUPLICATE_ID = "duplicate_id"

_REASON_TEXT = {
    MISSING_FIELD: "a required annotation field was missing",
    BAD_VALUE: "an annotation value was not a valid number",
    BOX_OUTSIDE_IMAGE: "a box lay outside the image by more than 1 pixel",
    ZERO_AREA: "a box had zero or negative area",
    UNKNOWN_CLASS: "an object's class is not in the label list",
    UNREADABLE_ANNOTATION: "an annotation file could not be parsed",
    MISSING_IMAGE: "the image file does not exist",
    CORRUPT_IMAGE: "the image could not be decoded (corrupt, truncated or unsupported format)",
    SIZE_MISMATCH: "the decoded image size differs from the annotated size",
    DUPLICATE_ID: "two COCO image entries share one id (both are skipped: their annotations are ambiguous)",
}

_HOW_TO_GET_DATA = (
    "Generate the built-in synthetic dataset with `python -m train.synthetic --out data/synthetic` "
    "(or `make data`), or point --data at your own data: a Pascal VOC folder (e.g. VOCdevkit/VOC2012 holding "
    "Annotations/, JPEGImages/ and ImageSets/Main/{split}.txt) or COCO (a folder holding "
    "annotations/instances_{split}.json plus the images, or an instances .json file). Nothing can be "
    "downloaded from this machine: fetch VOC (host.robots.ox.ac.uk/pascal/VOC) or COCO (cocodataset.org) "
    "on a connected machine and copy them here."
)


class AnnotationError(ValueError):
    """A malformed annotation: ``file`` and ``field`` say where, the message says what was expected."""

    def __init__(self, file: str | Path, field: str, message: str, reason: str = BAD_VALUE) -> None:
        self.file = str(file)
        self.field = field
        self.reason = reason
        self.detail = f"{field}: {message}"
        super().__init__(f"{self.file}: {self.detail}")


@dataclasses.dataclass
class Record:
    """One annotated image.

    ``boxes``: float32 ``(K, 4)`` normalized ``ymin, xmin, ymax, xmax``; ``classes``: int32 ``(K,)``
    0-based indices into ``Dataset.labels``; ``height``/``width``: annotated image size in pixels;
    ``difficult``: bool ``(K,)`` (VOC's flag; all False for COCO).
    """

    image_path: str
    boxes: np.ndarray
    classes: np.ndarray
    height: int
    width: int
    difficult: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.classes = np.asarray(self.classes, dtype=np.int32).reshape(-1)
        if len(self.boxes) != len(self.classes):
            raise ValueError(f"Record {self.image_path}: {len(self.boxes)} boxes but {len(self.classes)} classes")
        if self.difficult is None:
            self.difficult = np.zeros(len(self.classes), dtype=bool)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)


@dataclasses.dataclass
class Dataset:
    """``labels`` (class names), ``records`` (usable images) and ``skipped`` (reason -> ``"file: detail"``)."""

    labels: list[str]
    records: list[Record]
    skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    source: str = ""
    format: str = ""

    @property
    def num_objects(self) -> int:
        return sum(len(r.classes) for r in self.records)

    def class_counts(self) -> dict[str, int]:
        """Objects per class name."""
        counts = np.zeros(len(self.labels), dtype=np.int64)
        for record in self.records:
            np.add.at(counts, record.classes, 1)
        return {name: int(n) for name, n in zip(self.labels, counts, strict=True)}

    def verify_images(self, progress: bool = True, workers: int = 4) -> int:
        """Decode every image once; drop the unreadable ones into ``skipped["corrupt_image"]`` (or
        ``skipped["size_mismatch"]`` when the decoded size differs from the annotation). Returns how many
        were dropped. Truncated JPEGs (no end-of-image marker) count as corrupt."""
        if not self.records:
            return 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            results = list(
                tqdm(
                    pool.map(_check_image, self.records),
                    total=len(self.records),
                    desc="verify images",
                    unit="img",
                    disable=not progress,
                    leave=False,
                )
            )
        kept = []
        for record, problem in zip(self.records, results, strict=True):
            if problem is None:
                kept.append(record)
            else:
                reason, detail = problem
                self.skipped.setdefault(reason, []).append(f"{record.image_path}: {detail}")
        dropped = len(self.records) - len(kept)
        self.records = kept
        if dropped:
            log.warning("%s: dropped %d unreadable images", self.source or "dataset", dropped)
        return dropped

    def summary(self) -> str:
        """One paragraph: what was loaded, and what was skipped and why (with a few examples)."""
        text = (
            f"{self.source or 'dataset'} ({self.format or 'unknown format'}): {len(self.records)} images, "
            f"{self.num_objects} objects, {len(self.labels)} classes."
        )
        total = sum(len(v) for v in self.skipped.values())
        if not total:
            return text + " Nothing was skipped."
        parts = []
        for reason, items in sorted(self.skipped.items()):
            if not items:
                continue
            examples = "; ".join(items[:2]) + ("; ..." if len(items) > 2 else "")
            parts.append(f"{len(items)} x {reason} ({_REASON_TEXT.get(reason, reason)}; e.g. {examples})")
        return text + f" Skipped {total} items: " + ", ".join(parts) + "."


def _check_image(record: Record) -> tuple[str, str] | None:
    path = Path(record.image_path)
    try:
        data = path.read_bytes()
    except OSError as error:
        return CORRUPT_IMAGE, f"cannot read file ({error.strerror or error})"
    if not data:
        return CORRUPT_IMAGE, "empty file"
    kind = _image_kind(data)
    if kind is None:
        return CORRUPT_IMAGE, "not a JPEG, PNG, BMP or GIF file"
    if kind == "jpeg" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return CORRUPT_IMAGE, "truncated JPEG (no end-of-image marker)"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        return CORRUPT_IMAGE, f"OpenCV cannot decode this {kind.upper()} file"
    height, width = image.shape[:2]
    if (height, width) != (record.height, record.width):
        return SIZE_MISMATCH, f"decoded {width}x{height}, annotation says {record.width}x{record.height}"
    return None


def _image_kind(data: bytes) -> str | None:
    """The formats TensorFlow's ``decode_image`` reads, by magic bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


# ----------------------------------------------------------------------------- shared helpers


class _Collector:
    """Raises ``AnnotationError`` or, with ``skip_bad``, records it under its reason."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.skipped: dict[str, list[str]] = {}

    def problem(self, error: AnnotationError) -> None:
        if not self.skip_bad:
            raise error
        self.skipped.setdefault(error.reason, []).append(f"{error.file}: {error.detail}")

    def missing_image(self, file: str | Path, field: str, image_path: Path) -> None:
        self.skipped.setdefault(MISSING_IMAGE, []).append(
            f"{file}: {field}: expected an image file, {image_path} does not exist"
        )


def _number(value: Any, file: str | Path, field: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise AnnotationError(file, field, "expected a number, the field is empty", MISSING_FIELD)
    if isinstance(value, bool):
        raise AnnotationError(file, field, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(file, field, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise AnnotationError(file, field, f"expected a finite number, got {value!r}")
    return number


def _coco_id(value: Any, file: str | Path, field: str) -> int | str:
    """A COCO id (``images[].id``, ``image_id``, ``category_id``, ``categories[].id``): an integer or a string."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AnnotationError(file, field, f"expected an integer id, got {type(value).__name__} {value!r}")
    return value


def _image_size(width: Any, height: Any, file: str | Path, field: str) -> tuple[int, int]:
    w = _number(width, file, f"{field}width")
    h = _number(height, file, f"{field}height")
    for name, v in (("width", w), ("height", h)):
        if v < 1 or v != int(v):
            raise AnnotationError(file, f"{field}{name}", f"expected a positive whole number of pixels, got {v:g}")
    return int(h), int(w)


def _edges_to_box(
    x0: float, y0: float, x1: float, y1: float, height: int, width: int, file: str | Path, field: str
) -> np.ndarray:
    """Pixel edges -> normalized ``ymin, xmin, ymax, xmax``, clipping up to ``BOX_TOLERANCE_PX``."""
    tol = BOX_TOLERANCE_PX
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(
            file,
            field,
            f"expected a box with positive width and height, got x {x0:g}..{x1:g}, y {y0:g}..{y1:g}",
            ZERO_AREA,
        )
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise AnnotationError(
            file,
            field,
            f"expected a box inside the {width}x{height} image (1 px tolerance), "
            f"got x {x0:g}..{x1:g}, y {y0:g}..{y1:g} in pixel edges",
            BOX_OUTSIDE_IMAGE,
        )
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(file, field, "expected a box with positive area inside the image, got none", ZERO_AREA)
    return np.array([y0 / height, x0 / width, y1 / height, x1 / width], dtype=np.float32)


# ----------------------------------------------------------------------------- format detection


def detect_format(path: str | Path) -> str:
    """``"voc"`` or ``"coco"`` for a dataset at ``path``; raises ``FileNotFoundError``/``ValueError``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}. {_HOW_TO_GET_DATA}")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise ValueError(f"{path}: a file dataset must be a COCO instances .json file. {_HOW_TO_GET_DATA}")
    if (path / "Annotations").is_dir() or (path / "ImageSets" / "Main").is_dir():
        return "voc"
    if (path / "annotations").is_dir() and any((path / "annotations").glob("*.json")):
        return "coco"
    raise ValueError(
        f"{path}: cannot tell the dataset format: expected Annotations/ (Pascal VOC) or annotations/*.json (COCO). "
        f"Pass fmt='voc' or 'coco' (--format) if the layout is unusual. {_HOW_TO_GET_DATA}"
    )


def list_splits(path: str | Path, fmt: str = "auto") -> list[str]:
    """The split names of the dataset at ``path``, ``train`` first: VOC ``ImageSets/Main/*.txt`` (not the
    per-class ``<class>_<split>.txt`` lists); COCO ``annotations/instances_*.json`` (else ``*.json``) or the
    one ``.json`` file ``path`` names."""
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "voc":
        names = [p.stem for p in (_voc_root(path) / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem]
    elif fmt == "coco":
        if path.is_file():
            return [path.stem.removeprefix("instances_")]
        files = sorted((path / "annotations").glob("instances_*.json")) or sorted((path / "annotations").glob("*.json"))
        names = [p.stem.removeprefix("instances_") for p in files]
    else:
        raise ValueError(f"dataset format must be one of voc, coco; got {fmt!r}")
    return sorted(names, key=lambda name: (name != "train", name))


def load_dataset(
    path: str | Path,
    split: str,
    fmt: str = "auto",
    labels: Sequence[str] | None = None,
    skip_bad: bool = False,
    image_dir: str | Path | None = None,
) -> Dataset:
    """Load the ``split`` of the VOC or COCO dataset at ``path`` (see module doc).

    ``fmt``: ``"auto"`` (detect from the path), ``"voc"`` or ``"coco"``. ``labels``: class names to use
    (index = class id); objects of other classes are unknown. ``image_dir``: COCO only, where the images
    are (default: found next to the annotation file).
    """
    if fmt not in FORMATS:
        raise ValueError(f"dataset format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}. {_HOW_TO_GET_DATA}")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "voc":
        dataset = _load_voc(path, split, labels, skip_bad)
    elif fmt == "coco":
        dataset = _load_coco(path, split, labels, skip_bad, image_dir)
    else:  # pragma: no cover - guarded above
        raise ValueError(f"dataset format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if any(dataset.skipped.values()):
        log.warning("%s", dataset.summary())
    return dataset


# ----------------------------------------------------------------------------- Pascal VOC


def _voc_root(path: Path) -> Path:
    if (path / "Annotations").is_dir():
        return path
    candidates = sorted(p.parent for p in path.glob("*/Annotations")) + sorted(
        p.parent for p in path.glob("*/*/Annotations")
    )
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(
        f"{path}: expected a Pascal VOC folder with Annotations/, JPEGImages/ and ImageSets/Main/"
        + (f"; found several: {', '.join(map(str, candidates))}" if candidates else "")
    )


def _read_labels_file(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: expected one class name per line, the file is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names must be unique, got {names}")
    return names


def _voc_names(ann_files: Iterable[Path]) -> list[str]:
    names: set[str] = set()
    for file in ann_files:
        try:
            root = ET.parse(file).getroot()
        except (ET.ParseError, OSError):
            continue
        names.update(n.text.strip() for n in root.iter("name") if n.text and n.text.strip())
    return sorted(names)


def _voc_text(element: ET.Element, tag: str, file: Path, field: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(file, field, f"expected a <{tag}> element with a value, it is missing", MISSING_FIELD)
    return child.text.strip()


def _load_voc(path: Path, split: str, labels: Sequence[str] | None, skip_bad: bool) -> Dataset:
    root = _voc_root(path)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(
            f"{split_file}: no such split list; expected one image id per line. Available splits: {available or 'none'}"
        )
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if labels is not None:
        label_list = list(labels)
    elif (root / "labels.txt").is_file():
        label_list = _read_labels_file(root / "labels.txt")
    else:
        label_list = _voc_names(sorted(ann_dir.glob("*.xml")))
        if not label_list:
            raise ValueError(f"{ann_dir}: found no <object><name> in any annotation; cannot infer the class list")
    class_index = {name: i for i, name in enumerate(label_list)}
    collector = _Collector(skip_bad)
    records = []
    for image_id in tqdm(ids, desc=f"VOC {split}", unit="img", leave=False, disable=len(ids) < 2000):
        try:
            record = _parse_voc(ann_dir / f"{image_id}.xml", image_id, img_dir, class_index, collector)
        except AnnotationError as error:
            collector.problem(error)
            continue
        if not Path(record.image_path).is_file():
            collector.missing_image(ann_dir / f"{image_id}.xml", "filename", Path(record.image_path))
            continue
        records.append(record)
    return Dataset(label_list, records, collector.skipped, source=str(root), format="voc")


def _parse_voc(file: Path, image_id: str, img_dir: Path, class_index: dict[str, int], collector: _Collector) -> Record:
    """File-level problems raise; object-level problems go through ``collector``."""
    if not file.is_file():
        raise AnnotationError(
            file, "file", f"expected the annotation of image '{image_id}', no such file", MISSING_FIELD
        )
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as error:
        raise AnnotationError(file, "xml", f"expected well-formed XML ({error})", UNREADABLE_ANNOTATION) from None
    size = root.find("size")
    if size is None:
        raise AnnotationError(file, "size", "expected a <size> element with <width> and <height>", MISSING_FIELD)
    height, width = _image_size(
        _voc_text(size, "width", file, "size/width"), _voc_text(size, "height", file, "size/height"), file, "size/"
    )
    filename_el = root.find("filename")
    filename = filename_el.text.strip() if filename_el is not None and filename_el.text else f"{image_id}.jpg"
    boxes, classes, difficult = [], [], []
    for k, obj in enumerate(root.findall("object")):
        field = f"object[{k}]"
        try:
            name = _voc_text(obj, "name", file, f"{field}/name")
            if name not in class_index:
                raise AnnotationError(
                    file, f"{field}/name", f"expected one of {sorted(class_index)}, got {name!r}", UNKNOWN_CLASS
                )
            bndbox = obj.find("bndbox")
            if bndbox is None:
                raise AnnotationError(
                    file, f"{field}/bndbox", "expected a <bndbox> element, it is missing", MISSING_FIELD
                )
            xmin, ymin, xmax, ymax = (
                _number(_voc_text(bndbox, tag, file, f"{field}/bndbox/{tag}"), file, f"{field}/bndbox/{tag}")
                for tag in ("xmin", "ymin", "xmax", "ymax")
            )
            box = _edges_to_box(xmin - 1, ymin - 1, xmax, ymax, height, width, file, f"{field}/bndbox")
            diff_el = obj.find("difficult")
            is_difficult = diff_el is not None and (diff_el.text or "0").strip() not in ("0", "")
        except AnnotationError as error:
            collector.problem(error)
            continue
        boxes.append(box)
        classes.append(class_index[name])
        difficult.append(is_difficult)
    return Record(
        str(img_dir / filename), np.array(boxes, np.float32).reshape(-1, 4), classes, height, width, difficult
    )


# ----------------------------------------------------------------------------- COCO


def _coco_json(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    ann_dir = path / "annotations"
    for name in (f"instances_{split}.json", f"{split}.json"):
        if (ann_dir / name).is_file():
            return ann_dir / name
    available = sorted(p.name for p in ann_dir.glob("*.json")) if ann_dir.is_dir() else []
    raise FileNotFoundError(
        f"{ann_dir / f'instances_{split}.json'}: no such COCO annotation file for split '{split}'; "
        f"available: {available or 'none'}"
    )


def _coco_image_dir(json_path: Path, split: str, file_names: list[str]) -> Path:
    base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    stem = json_path.stem.removeprefix("instances_")
    candidates = [base / "images" / split, base / split, base / "images" / stem, base / stem, base / "images", base]
    candidates.append(json_path.parent)
    probe = file_names[: min(len(file_names), 5)]
    for folder in candidates:
        if probe and any((folder / name).is_file() for name in probe):
            return folder
    return candidates[0]


def _first_index_of_ids(images: list) -> dict[int | str, int]:
    """Valid image id -> index of the first ``images`` entry that has it (other entries are checked later)."""
    first: dict[int | str, int] = {}
    for k, image in enumerate(images):
        value = image.get("id") if isinstance(image, dict) else None
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            first.setdefault(value, k)
    return first


def _load_coco(
    path: Path, split: str, labels: Sequence[str] | None, skip_bad: bool, image_dir: str | Path | None
) -> Dataset:
    json_path = _coco_json(path, split)
    try:
        data = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(
            json_path, "json", f"expected a readable JSON file ({error})", UNREADABLE_ANNOTATION
        ) from None
    if not isinstance(data, dict):
        raise AnnotationError(json_path, "json", f"expected a JSON object at the top level, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(json_path, key, "expected a list, it is missing or not a list", MISSING_FIELD)

    categories = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise AnnotationError(
                json_path, f"categories[{k}]", "expected an object with 'id' and 'name'", MISSING_FIELD
            )
        categories[_coco_id(cat["id"], json_path, f"categories[{k}].id")] = str(cat["name"])
    try:
        ordered = sorted(categories.items())
    except TypeError:
        raise AnnotationError(json_path, "categories[].id", "expected integer category ids") from None
    label_list = list(labels) if labels is not None else [name for _, name in ordered]
    if labels is None and len(set(label_list)) != len(label_list):
        raise AnnotationError(json_path, "categories[].name", f"expected unique category names, got {label_list}")
    class_index = {name: i for i, name in enumerate(label_list)}

    collector = _Collector(skip_bad)
    images: dict[Any, tuple[str, int, int]] = {}
    order: list[Any] = []
    first_index = _first_index_of_ids(data["images"])
    duplicated = set()
    for k, image in enumerate(data["images"]):
        field = f"images[{k}]"
        try:
            if not isinstance(image, dict):
                raise AnnotationError(json_path, field, "expected an object", BAD_VALUE)
            for key in ("id", "file_name", "width", "height"):
                if key not in image:
                    raise AnnotationError(
                        json_path, f"{field}.{key}", "expected this field, it is missing", MISSING_FIELD
                    )
            image_id = _coco_id(image["id"], json_path, f"{field}.id")
            if first_index[image_id] != k:
                duplicated.add(image_id)
                raise AnnotationError(
                    json_path,
                    f"{field}.id",
                    f"expected a unique image id, got {image_id!r} again (first at images[{first_index[image_id]}])",
                    DUPLICATE_ID,
                )
            height, width = _image_size(image["width"], image["height"], json_path, f"{field}.")
        except AnnotationError as error:
            collector.problem(error)
            continue
        images[image_id] = (str(image["file_name"]), height, width)
        order.append(image_id)
    for image_id in duplicated & set(images):  # with skip_bad: the first entry of a duplicated id goes too
        collector.problem(
            AnnotationError(
                json_path,
                f"images[{first_index[image_id]}].id",
                f"expected a unique image id, {image_id!r} is used again later",
                DUPLICATE_ID,
            )
        )
        del images[image_id]
        order.remove(image_id)
    folder = (
        Path(image_dir) if image_dir is not None else _coco_image_dir(json_path, split, [images[i][0] for i in order])
    )

    per_image: dict[Any, list[tuple[np.ndarray, int]]] = {image_id: [] for image_id in order}
    all_image_ids = set(first_index)
    for k, ann in enumerate(data["annotations"]):
        field = f"annotations[{k}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        try:
            if not isinstance(ann, dict):
                raise AnnotationError(json_path, field, "expected an object", BAD_VALUE)
            if ann.get("iscrowd", 0):
                continue
            for key in ("image_id", "category_id", "bbox"):
                if key not in ann:
                    raise AnnotationError(
                        json_path, f"{field}.{key}", "expected this field, it is missing", MISSING_FIELD
                    )
            image_id = _coco_id(ann["image_id"], json_path, f"{field}.image_id")
            if image_id not in per_image:
                if image_id in all_image_ids:
                    continue  # its image entry was bad and already counted
                raise AnnotationError(
                    json_path, f"{field}.image_id", f"expected the id of an entry in images, got {image_id!r}"
                )
            file_name, height, width = images[image_id]
            category = _coco_id(ann["category_id"], json_path, f"{field}.category_id")
            if category not in categories or categories[category] not in class_index:
                known = sorted(categories) if labels is None else label_list
                raise AnnotationError(
                    json_path, f"{field}.category_id", f"expected one of {known}, got {category!r}", UNKNOWN_CLASS
                )
            bbox = ann["bbox"]
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise AnnotationError(json_path, f"{field}.bbox", f"expected [x, y, width, height], got {bbox!r}")
            x, y, w, h = (_number(v, json_path, f"{field}.bbox[{i}]") for i, v in enumerate(bbox))
            box = _edges_to_box(x, y, x + w, y + h, height, width, json_path, f"{field}.bbox ({file_name})")
        except AnnotationError as error:
            collector.problem(error)
            continue
        per_image[image_id].append((box, class_index[categories[category]]))

    records = []
    for image_id in order:
        file_name, height, width = images[image_id]
        image_path = folder / file_name
        if not image_path.is_file():
            collector.missing_image(json_path, f"images[{first_index[image_id]}].file_name", image_path)
            continue
        objects = per_image[image_id]
        boxes = np.array([b for b, _ in objects], np.float32).reshape(-1, 4)
        records.append(Record(str(image_path), boxes, [c for _, c in objects], height, width))
    return Dataset(label_list, records, collector.skipped, source=str(json_path), format="coco")
