"""Run in .venv-imx500 by ``tests/convert/test_imx500.py``: SSDPostProcess on the export model vs the edge's decoder.

    .venv-imx500/bin/python tests/convert/imx500_parity.py RUN WEIGHTS.npz DATA

Prints one JSON line: detections compared, max box difference; exits 1 when counts or classes differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

THRESHOLD = 0.002
"""Below the background prior's 0.0025 per class, so a model trained one epoch still gives detections to compare."""


def main() -> int:
    from convert import imx500
    from edge.postprocess import decode_and_nms
    from train.datasets import load_dataset
    from train.evaluate import load_image
    from train.rundir import RunDir

    run, weights, data = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    info = RunDir(run).read_info()
    config, labels = info.config, info.labels
    with np.load(weights) as npz:
        export_model = imx500.build_export_model(config, {k: npz[k] for k in npz.files})
    options = imx500.PostprocessOptions(max_detections=20, score_threshold=THRESHOLD, iou_threshold=0.5)
    network = imx500.with_postprocess(export_model, config, options)
    detections, worst = 0, 0.0
    for record in load_dataset(data, "val", labels=labels, skip_bad=True).records[:8]:
        x = imx500.to_model_input(load_image(record.image_path, config.input_size)[None])
        deltas, scores = export_model.predict(x, verbose=0)
        boxes, _, classes = decode_and_nms(
            deltas[0], scores[0], config.generate_anchors(), THRESHOLD, 0.5, 20, config.variances
        )
        their_boxes, _, their_classes, count = (np.asarray(t)[0] for t in network.predict(x, verbose=0))
        count = int(count)
        if count != len(classes) or not np.array_equal(their_classes[:count].astype(int), classes):
            print(json.dumps({"error": f"{record.image_path}: {count} vs {len(classes)} detections or classes differ"}))
            return 1
        detections += count
        if count:
            worst = max(worst, float(np.abs(their_boxes[:count] - np.clip(boxes, 0, 1)).max()))
    print(json.dumps({"detections": detections, "max_box_diff": worst}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
