"""The sweep's IMX500 column: which alpha x input size cells fit the AI Camera's sensor, and how much memory they use.

Runs in .venv-imx500. For every cell: ``train.model.build_ssd`` (untrained, like the sweep's latency-only cells:
memory depends on the architecture, not on the weights), MCT PTQ with the IMX500 TPC on a few synthetic scenes,
``SSDPostProcess`` appended, then ``imxconv-tf --memory-report`` (the memory report without the full conversion).
Rows are written after every cell, so a long run keeps what it measured.

Usage: ``.venv-imx500/bin/python scripts/imx500_sweep.py [--alphas 0.5,1.0] [--sizes 224,300] [--out CSV]``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ("cell", "alpha", "input_size", "used_bytes", "available_bytes", "percent", "fits", "seconds", "note")


def measure(alpha: float, size: int, calibration_images: int) -> dict:
    import numpy as np

    from convert import imx500
    from edge.synthetic_scene import CLASS_NAMES, generate_scene
    from train.config import ModelConfig
    from train.model import build_ssd

    config = ModelConfig(alpha=alpha, input_size=(size, size), num_classes=len(CLASS_NAMES))
    start = time.perf_counter()
    export_model = imx500.build_export_model(config, imx500.export_weights(build_ssd(config)), "untrained")
    rng = np.random.default_rng(12345)
    from edge.image import resize_rgb

    images = [resize_rgb(generate_scene(rng, 240, 320).image, size, size) for _ in range(calibration_images)]
    quantized = imx500.quantize(export_model, images)
    row = {"cell": f"a{alpha:.2f}_s{size}", "alpha": alpha, "input_size": size, "note": ""}
    with tempfile.TemporaryDirectory(prefix="imx500_sweep_") as work:
        try:
            _, memory, _ = imx500.build_package(quantized, config, Path(work), memory_only=True)
        except imx500.ModelDoesNotFit as exc:
            memory = exc.memory
        except imx500.Imx500Error as exc:
            row.update(note=str(exc), seconds=round(time.perf_counter() - start, 1))
            return row
    row.update(memory.to_dict(), seconds=round(time.perf_counter() - start, 1))
    return row


def write_markdown(rows: list[dict], path: Path) -> None:
    lines = ["| cell | sensor memory (MB) | of available | fits | seconds |", "|---|---:|---:|---|---:|"]
    for row in rows:
        if row.get("used_bytes") in (None, ""):
            lines.append(f"| {row['cell']} | - | - | error: {row['note']} | {row['seconds']} |")
            continue
        lines.append(
            f"| {row['cell']} | {int(row['used_bytes']) / 1e6:.2f} | {float(row['percent']):.0f} % | "
            f"{'yes' if str(row['fits']) == 'True' else 'no'} | {row['seconds']} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", default="0.25,0.5,0.75,1.0")
    parser.add_argument("--sizes", default="128,160,192,224,300")
    parser.add_argument("--calibration-images", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "imx500_memory.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from convert.imx500 import check_toolchain

    check_toolchain()
    rows: list[dict] = []
    if args.out.exists():
        with args.out.open() as f:
            rows = list(csv.DictReader(f))
    cells = [(float(a), int(s)) for a in args.alphas.split(",") for s in args.sizes.split(",")]
    for alpha, size in cells:
        row = measure(alpha, size, args.calibration_images)
        rows = [r for r in rows if r["cell"] != row["cell"]] + [row]
        rows.sort(key=lambda r: (float(r["alpha"]), int(r["input_size"])))
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        write_markdown(rows, args.out.with_suffix(".md"))
        print(
            f"{row['cell']}: {row.get('percent', '-')} % fits={row.get('fits', '-')} {row['seconds']} s {row['note']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
