"""Throughput of the training input pipeline (images/second), to show it is not the bottleneck.

    python scripts/bench_input_pipeline.py data/synthetic --size 160 --batch-size 32 [--no-augment]
        [--no-cache] [--epochs 2] [--json results.json]

Reads a dataset with ``train.datasets.load_dataset`` (VOC or COCO, detected), builds
``train.pipeline.make_dataset(training=True)`` and times full epochs. The first epoch includes
decoding (and filling the cache); later epochs show the steady state. Compare with the training
step rate printed by ``python -m train`` (images/s = steps/s x batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="dataset directory (Pascal VOC layout or COCO)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--size", default="160", help="model input: 160 or HxW, e.g. 160x192")
    parser.add_argument("--alpha", type=float, default=0.5, help="irrelevant to the pipeline; recorded only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="timed passes over the split (first one is cold)")
    parser.add_argument("--max-images", type=int, default=0, help="use only the first N records (0 = all)")
    parser.add_argument("--no-augment", action="store_true", help="resize only")
    parser.add_argument("--no-cache", action="store_true", help="decode every epoch")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from train.augment import AugmentConfig
    from train.config import ModelConfig, parse_input_size
    from train.datasets import load_dataset
    from train.pipeline import make_dataset

    dataset = load_dataset(args.data, args.split)
    records = dataset.records[: args.max_images] if args.max_images else dataset.records
    if not records:
        print(f"error: {args.data} split '{args.split}' has no images", file=sys.stderr)
        return 2
    config = ModelConfig(alpha=args.alpha, input_size=parse_input_size(args.size), num_classes=len(dataset.labels))
    pipeline = make_dataset(
        records,
        config,
        args.batch_size,
        training=True,
        augment=None if args.no_augment else AugmentConfig(),
        cache=not args.no_cache,
    )
    epochs = []
    for epoch in range(1, args.epochs + 1):
        count = 0
        start = time.perf_counter()
        for images, _ in tqdm(pipeline, desc=f"epoch {epoch}", unit="batch", leave=False):
            count += int(images.shape[0])
        seconds = time.perf_counter() - start
        epochs.append({"epoch": epoch, "images": count, "seconds": round(seconds, 3), "images_per_s": count / seconds})
        print(f"epoch {epoch}: {count} images in {seconds:.2f} s = {count / seconds:.1f} images/s")

    result = {
        "data": str(args.data),
        "split": args.split,
        "input_size": list(config.input_size),
        "batch_size": args.batch_size,
        "augment": not args.no_augment,
        "cache": not args.no_cache,
        "cpu_count": os.cpu_count(),
        "epochs": epochs,
        "steady_images_per_s": epochs[-1]["images_per_s"],
    }
    print(f"steady state: {result['steady_images_per_s']:.1f} images/s at {args.size} (batch {args.batch_size})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
