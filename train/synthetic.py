"""The built-in synthetic detection dataset, written in Pascal VOC layout.

``python -m train.synthetic --out DIR --num-images N --seed S`` writes::

    DIR/JPEGImages/000000.jpg            RGB scenes from ``edge.synthetic_scene``
    DIR/Annotations/000000.xml           VOC XML, bndbox in 1-based inclusive pixel coordinates
    DIR/ImageSets/Main/train.txt|val.txt image ids, one per line
    DIR/labels.txt                       class names, one per line (``edge.synthetic_scene.CLASS_NAMES``)
    DIR/synthetic.json                   the arguments it was made with (written last)

Image ``i`` is drawn from its own RNG seeded by ``(seed, i)``, so the same arguments give
byte-identical annotations (and images), and any image can be regenerated alone.
A visible-pixel box ``[x0, x1)`` in 0-based pixel edges is written as ``xmin = x0 + 1``,
``xmax = x1`` (VOC's 1-based inclusive convention), so ``train.datasets`` reads it back exactly.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.synthetic_scene import CLASS_NAMES, Scene, generate_scene

log = logging.getLogger(__name__)

DEFAULT_JPEG_QUALITY = 92
FORMAT_VERSION = 2
"""Bumped whenever the generator's output changes for the same arguments (invalidates existing datasets)."""


def image_id(index: int) -> str:
    return f"{index:06d}"


DEFAULT_MAX_OBJECTS = 10
DEFAULT_MIN_SIZE = 0.15
"""Smallest shape extent as a fraction of the image's shorter side (the largest is 0.9)."""


def scene_for_index(
    seed: int,
    index: int,
    height: int,
    width: int,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    min_size_frac: float = DEFAULT_MIN_SIZE,
) -> Scene:
    """The scene of image ``index`` for ``seed`` (its RNG is seeded by ``(seed, index)``)."""
    rng = np.random.default_rng([seed, index])
    return generate_scene(rng, height, width, max_objects=max_objects, min_size_frac=min_size_frac)


def split_ids(num_images: int, seed: int, val_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic ``(train_ids, val_ids)``, each sorted; ``round(num_images * val_fraction)`` go to val."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    num_val = round(num_images * val_fraction)
    if num_images >= 2 and val_fraction > 0:
        num_val = min(max(num_val, 1), num_images - 1)
    order = np.random.default_rng([seed, num_images, 7]).permutation(num_images)
    val = set(order[:num_val].tolist())
    train_ids = [image_id(i) for i in range(num_images) if i not in val]
    val_ids = [image_id(i) for i in range(num_images) if i in val]
    return train_ids, val_ids


def voc_annotation(filename: str, scene: Scene) -> bytes:
    """Standard Pascal VOC annotation XML (UTF-8 bytes) for ``scene``."""
    height, width, depth = scene.image.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "edge-ssd synthetic shapes"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = str(depth)
    ET.SubElement(root, "segmented").text = "0"
    pixel_edges = np.rint(scene.boxes * np.array([height, width, height, width], dtype=np.float64)).astype(int)
    for (y0, x0, y1, x1), class_id, truncated, occluded, difficult in zip(
        pixel_edges, scene.class_ids, scene.truncated, scene.occluded, scene.difficult, strict=True
    ):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CLASS_NAMES[int(class_id)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(truncated))
        ET.SubElement(obj, "occluded").text = str(int(occluded))
        ET.SubElement(obj, "difficult").text = str(int(difficult))
        box = ET.SubElement(obj, "bndbox")
        ET.SubElement(box, "xmin").text = str(x0 + 1)
        ET.SubElement(box, "ymin").text = str(y0 + 1)
        ET.SubElement(box, "xmax").text = str(x1)
        ET.SubElement(box, "ymax").text = str(y1)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def _settings(
    num_images: int,
    seed: int,
    width: int,
    height: int,
    val_fraction: float,
    max_objects: int,
    quality: int,
    min_size_frac: float = DEFAULT_MIN_SIZE,
):
    return {
        "format_version": FORMAT_VERSION,
        "num_images": num_images,
        "seed": seed,
        "width": width,
        "height": height,
        "val_fraction": val_fraction,
        "max_objects": max_objects,
        "min_size_frac": min_size_frac,
        "jpeg_quality": quality,
        "labels": list(CLASS_NAMES),
    }


def is_complete(out_dir: Path, settings: dict) -> bool:
    """True if ``out_dir`` holds a finished dataset made with exactly ``settings``."""
    meta = out_dir / "synthetic.json"
    try:
        recorded = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    if recorded.get("settings") != settings or not recorded.get("complete"):
        return False
    num = settings["num_images"]
    needed = [out_dir / "ImageSets/Main/train.txt", out_dir / "ImageSets/Main/val.txt", out_dir / "labels.txt"]
    needed += [
        out_dir / "JPEGImages" / f"{image_id(num - 1)}.jpg",
        out_dir / "Annotations" / f"{image_id(num - 1)}.xml",
    ]
    return all(p.is_file() for p in needed)


@dataclasses.dataclass(frozen=True)
class _ImageJob:
    """Images ``start..stop-1`` of one dataset: what a worker process needs to render and write them."""

    images_dir: Path
    ann_dir: Path
    start: int
    stop: int
    seed: int
    height: int
    width: int
    max_objects: int
    min_size_frac: float
    jpeg_quality: int


def _write_images(job: _ImageJob) -> int:
    """Render, encode and write images ``job.start..job.stop-1`` with their VOC XML; returns the object count."""
    encode = [int(cv2.IMWRITE_JPEG_QUALITY), int(job.jpeg_quality)]
    num_objects = 0
    for index in range(job.start, job.stop):
        scene = scene_for_index(job.seed, index, job.height, job.width, job.max_objects, job.min_size_frac)
        name = image_id(index)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR), encode)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode image {index} as JPEG")
        (job.images_dir / f"{name}.jpg").write_bytes(jpeg.tobytes())
        (job.ann_dir / f"{name}.xml").write_bytes(voc_annotation(f"{name}.jpg", scene))
        num_objects += len(scene.class_ids)
    return num_objects


IMAGES_PER_JOB = 100


def default_workers() -> int:
    """One worker process per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    val_fraction: float = 0.15,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    min_size_frac: float = DEFAULT_MIN_SIZE,
    progress: bool = True,
    force: bool = False,
    workers: int | None = None,
) -> Path:
    """Write the synthetic dataset to ``out_dir`` (Pascal VOC layout, see module doc); returns its path.

    ``workers`` processes (default: one per CPU) render blocks of ``IMAGES_PER_JOB`` images; every image
    has its own RNG, so the files are byte-identical whatever the number of workers.

    Skips the work if ``out_dir`` already holds a complete dataset made with the same arguments
    (unless ``force``). Refuses to write into a non-empty folder that is not a synthetic dataset.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if width < 32 or height < 32:
        raise ValueError(f"width and height must be >= 32 pixels, got {width}x{height}")
    out = Path(out_dir)
    if not 0.0 < min_size_frac <= 0.9:
        raise ValueError(f"min_size_frac must be in (0, 0.9], got {min_size_frac}")
    settings = _settings(num_images, seed, width, height, val_fraction, max_objects, jpeg_quality, min_size_frac)
    train_ids, val_ids = split_ids(num_images, seed, val_fraction)
    if not force and is_complete(out, settings):
        log.info("%s already holds this synthetic dataset (%d images, seed %d); skipping", out, num_images, seed)
        return out
    meta = out / "synthetic.json"
    if out.exists() and any(out.iterdir()) and not meta.exists():
        raise FileExistsError(
            f"{out} is not empty and has no synthetic.json, so it is not a synthetic dataset; "
            "choose an empty or new --out folder"
        )
    images_dir, ann_dir, sets_dir = out / "JPEGImages", out / "Annotations", out / "ImageSets" / "Main"
    for folder in (images_dir, ann_dir, sets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"settings": settings, "complete": False}, indent=2) + "\n")
    for stale in (sets_dir / "train.txt", sets_dir / "val.txt"):
        stale.unlink(missing_ok=True)

    jobs = [
        _ImageJob(
            images_dir,
            ann_dir,
            start,
            min(start + IMAGES_PER_JOB, num_images),
            seed,
            height,
            width,
            max_objects,
            min_size_frac,
            jpeg_quality,
        )
        for start in range(0, num_images, IMAGES_PER_JOB)
    ]
    workers = min(default_workers() if workers is None else max(1, workers), len(jobs))
    num_objects = 0
    with tqdm(total=num_images, desc=f"synthetic -> {out}", unit="img", disable=not progress) as bar:
        if workers == 1:
            results = map(_write_images, jobs)
        else:  # forkserver: fresh workers, safe whatever threads OpenCV or TensorFlow started here
            context = multiprocessing.get_context("forkserver")
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)
            results = pool.map(_write_images, jobs)
        try:
            for job, count in zip(jobs, results, strict=True):
                num_objects += count
                bar.update(job.stop - job.start)
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
    for folder, suffix in ((images_dir, ".jpg"), (ann_dir, ".xml")):  # left over from a larger earlier run
        for path in folder.glob(f"*{suffix}"):
            if path.stem.isdigit() and int(path.stem) >= num_images:
                path.unlink()

    (out / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (sets_dir / "val.txt").write_text("".join(f"{i}\n" for i in val_ids))
    (sets_dir / "train.txt").write_text("".join(f"{i}\n" for i in train_ids))
    stats = {"train_images": len(train_ids), "val_images": len(val_ids), "objects": num_objects}
    meta.write_text(json.dumps({"settings": settings, "complete": True, "stats": stats}, indent=2) + "\n")
    log.info("wrote %d images (%d objects) to %s", num_images, num_objects, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.synthetic",
        description="Generate the synthetic shapes detection dataset in Pascal VOC layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--num-images", type=int, default=3000, help="number of images (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="fraction of images in val (default 0.15)")
    parser.add_argument(
        "--max-objects",
        type=int,
        default=DEFAULT_MAX_OBJECTS,
        help=f"most shapes per image (default {DEFAULT_MAX_OBJECTS})",
    )
    parser.add_argument(
        "--min-size",
        type=float,
        default=DEFAULT_MIN_SIZE,
        help=f"smallest shape as a fraction of the shorter image side (default {DEFAULT_MIN_SIZE}; largest 0.9)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical dataset exists")
    parser.add_argument("--workers", type=int, default=None, help="processes rendering images (default: one per CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings(
        args.num_images,
        args.seed,
        args.width,
        args.height,
        args.val_fraction,
        args.max_objects,
        DEFAULT_JPEG_QUALITY,
        args.min_size,
    )
    if not args.force and is_complete(args.out, settings):
        print(f"{args.out} already holds a complete synthetic dataset with these arguments; nothing to do")
        return 0
    try:
        out = generate_dataset(
            args.out,
            args.num_images,
            args.seed,
            width=args.width,
            height=args.height,
            val_fraction=args.val_fraction,
            max_objects=args.max_objects,
            min_size_frac=args.min_size,
            force=args.force,
            workers=args.workers,
        )
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stats = json.loads((out / "synthetic.json").read_text())["stats"]
    print(
        f"wrote {args.num_images} images ({stats['objects']} objects, classes: {', '.join(CLASS_NAMES)}) to {out}: "
        f"JPEGImages/, Annotations/, ImageSets/Main/train.txt ({stats['train_images']}), "
        f"ImageSets/Main/val.txt ({stats['val_images']}), labels.txt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
