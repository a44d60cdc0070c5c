"""``python -m train --data D --alpha A --size S --epochs E --out runs/NAME``: train a MobileNet-SSD.

Re-running the same command resumes from ``runs/NAME/state`` (use ``--restart`` to start over).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import math
import sys
import time
from pathlib import Path

from train.config import AUGMENT_PRESETS, OPTIMIZERS, STRATEGIES, ModelConfig, parse_input_size
from train.datasets import FORMATS

WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
"""OSError numbers that mean the run directory cannot be written (disk full, quota, read-only, permissions)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset root (Pascal VOC folder or COCO json/folder)")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="dataset format")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--alpha", type=float, default=0.5, help="width multiplier (any float > 0)")
    parser.add_argument("--size", type=parse_input_size, default=(160, 160), help="input size: 160 or HxW")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS, help="SGD+Nesterov or AdamW")
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (cosine decay after warm-up)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=int, default=1, help="evaluate val mAP every N epochs")
    parser.add_argument("--patience", type=int, default=8, help="early stopping patience in epochs")
    parser.add_argument(
        "--max-train-minutes",
        type=float,
        default=None,
        help="time budget: stop before an epoch that would pass it (minutes)",
    )
    parser.add_argument("--backbone-weights", default="none", help="none | imagenet | PATH (.keras/.weights.h5)")
    parser.add_argument("--freeze-backbone", action="store_true", help="train only the SSD layers")
    parser.add_argument(
        "--fine-tune-from",
        type=int,
        default=None,
        help="train MobileNet blocks from this index on (0-13) and freeze the earlier ones",
    )
    parser.add_argument("--strategy", default="default", choices=STRATEGIES, help="tf.distribute strategy")
    parser.add_argument("--skip-bad", action="store_true", help="skip malformed annotations instead of failing")
    parser.add_argument(
        "--augment",
        default="ssd",
        choices=AUGMENT_PRESETS,
        help="augmentation preset: full SSD paper augmentation, a lighter one, or none",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="run directory, e.g. runs/demo")
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in --out")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def one_line(error: BaseException) -> str:
    """``str(error)`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(error).split())


def format_map(value: float | None) -> str:
    """A mAP for the final line: ``0.0000`` for 0.0; ``n/a`` with the reason when there is none."""
    if value is None:
        return "n/a (never evaluated)"
    if math.isnan(value):
        return "n/a (the validation split has no non-crowd ground-truth boxes)"
    return f"{value:.4f}"


def is_write_failure(error: BaseException) -> bool:
    """True for errors that mean the run directory cannot be written (disk full, read-only, no permission)."""
    if isinstance(error, OSError):
        return error.errno in WRITE_ERRNOS
    return "No space left on device" in str(error)


def main(argv: list[str] | None = None) -> int:
    """Train as the flags say; user mistakes (bad data, unusable weights, a full disk) print one line, exit 2."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import tensorflow as tf

    try:
        return _train(args, argv)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the last good checkpoint is in {args.out} (run the same command to resume)",
            file=sys.stderr,
        )
        return 130
    except (OSError, tf.errors.OpError) as error:
        if not is_write_failure(error):
            raise
        print(
            f"error: cannot write the run to {args.out}: {one_line(error)}; free space or fix permissions, "
            "then run the same command to resume from the last good checkpoint",
            file=sys.stderr,
        )
        return 2


def _train(args: argparse.Namespace, argv: list[str] | None) -> int:
    started = time.monotonic()

    from train.augment import AugmentConfig
    from train.datasets import AnnotationError
    from train.lib import DataConfig, TrainingError, load_training_data, run
    from train.rundir import RunDir, RunDirError
    from train.trainer import TrainConfig

    source = DataConfig(args.data, args.format, args.train_split, args.val_split, args.skip_bad)
    try:
        data = load_training_data(source)
    except (AnnotationError, OSError, ValueError) as error:
        hint = (
            f" (`python -m train.check_data --data {args.data}` lists every problem; --skip-bad skips and counts them)"
            if isinstance(error, AnnotationError)
            else ""
        )
        print(f"error: {one_line(error)}{hint}", file=sys.stderr)
        return 2
    for name, dataset in (("train", data.train), ("val", data.val)):
        print(f"{name}: {len(dataset.records)} images, {sum(len(r.classes) for r in dataset.records)} objects")
        if any(dataset.skipped.values()):
            print(dataset.summary())

    try:  # out-of-range flags (--epochs 0, --alpha 0, ...)
        model_config = ModelConfig(alpha=args.alpha, input_size=args.size, num_classes=len(data.labels))
        train_config = TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            warmup_epochs=args.warmup_epochs,
            weight_decay=args.weight_decay,
            eval_every=args.eval_every,
            patience=args.patience,
            seed=args.seed,
            backbone_weights=args.backbone_weights,
            freeze_backbone=args.freeze_backbone,
            fine_tune_from=args.fine_tune_from,
            strategy=args.strategy,
            max_train_minutes=args.max_train_minutes,
        )
    except ValueError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print("model:", json.dumps(model_config.to_dict()))
    print("train:", json.dumps(dataclasses.asdict(train_config)))
    command = " ".join(["python -m train", *(argv if argv is not None else sys.argv[1:])])
    try:
        metrics = run(
            model_config,
            train_config,
            data,
            args.out,
            augment=AugmentConfig.preset(args.augment),
            restart=args.restart,
            command=command,
        )
    except (RunDirError, TrainingError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    print(
        f"done in {elapsed / 60:.1f} min: best val mAP@0.5 {format_map(metrics.get('val_map50'))} "
        f"(epoch {metrics.get('best_epoch')}), COCO mAP {format_map(metrics.get('val_coco_map'))}"
    )
    out = RunDir(args.out)
    print(f"checkpoints: {out.best}, {out.last}; TensorBoard: {out.logs}")
    return 0
