"""``python -m train.check_data --data D [--format voc|coco|auto]``: list every problem in a dataset at once.

Training stops at the first malformed annotation; this loads every split with ``skip_bad=True`` and decodes
every image, then prints one line per problem, ``FILE: FIELD: what was expected``, the loaders' own wording.
Exit status: 0 when there is none, 1 when there is any, 2 when the dataset cannot be found or recognised.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from train.datasets import FORMATS, AnnotationError, Dataset, detect_format, list_splits, load_dataset

UNREADABLE_SPLIT = "unreadable_split"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: the ``split`` it was found in, the skip ``reason`` and ``detail`` (``"file: field: ..."``)."""

    split: str
    reason: str
    detail: str


def check_dataset(
    path: str | Path, fmt: str = "auto", splits: Sequence[str] | None = None, verify_images: bool = True
) -> tuple[list[Problem], dict[str, Dataset]]:
    """Every problem in the ``splits`` (default: all of them) of the dataset at ``path``, and the usable part
    of each split. The first split's class list is used for the others, as training does with train and val.
    Raises ``FileNotFoundError``/``ValueError`` only when ``path`` is not a dataset at all."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    problems: list[Problem] = []
    datasets: dict[str, Dataset] = {}
    labels = None
    for split in splits if splits is not None else list_splits(path, fmt):
        try:
            dataset = load_dataset(path, split, fmt=fmt, labels=labels, skip_bad=True)
        except (AnnotationError, OSError, ValueError) as error:  # a file-level problem: the split cannot be read
            reason = error.reason if isinstance(error, AnnotationError) else UNREADABLE_SPLIT
            problems.append(Problem(split, reason, " ".join(str(error).split())))
            continue
        if verify_images:
            dataset.verify_images(progress=False)
        labels = labels or dataset.labels
        datasets[split] = dataset
        problems += [Problem(split, reason, item) for reason, items in dataset.skipped.items() for item in items]
    return problems, datasets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.check_data", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset root (Pascal VOC folder or COCO json/folder)")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="dataset format")
    parser.add_argument("--split", action="append", help="check only this split (repeatable; default: every split)")
    args = parser.parse_args(argv)
    try:
        problems, datasets = check_dataset(args.data, args.format, args.split)
    except (OSError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"{problem.split}: {problem.detail} [{problem.reason}]")
    usable = ", ".join(f"{split} {len(d.records)} images / {d.num_objects} objects" for split, d in datasets.items())
    if not datasets and not problems:
        print(f"error: {args.data}: expected at least one split, found none", file=sys.stderr)
        return 2
    if problems:
        print(f"{args.data}: {len(problems)} problems (usable: {usable or 'nothing'})")
        return 1
    print(f"{args.data}: no problems ({usable})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
