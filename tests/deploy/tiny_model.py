"""Write a tiny untrained edge-SSD ``.tflite`` (float32, alpha 0.25, 96x96, NumPy post-processing) for deploy tests.

    python tests/deploy/tiny_model.py OUT.tflite [--variant N]

``--variant`` changes only the metadata's ``accuracy`` note, so two variants are different files of the same
model (what a rollback test needs). Uses the real ``train.model.build_ssd`` and ``convert.converter.convert``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", help="output .tflite paths, one variant each")
    args = parser.parse_args()

    from convert.converter import convert
    from edge.synthetic_scene import CLASS_NAMES
    from train.config import ModelConfig
    from train.model import build_ssd

    config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=len(CLASS_NAMES))
    model = build_ssd(config)
    for variant, out in enumerate(args.out):
        data = convert(model, config, list(CLASS_NAMES), quant="float32", accuracy={"note": f"untrained {variant}"})
        Path(out).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
