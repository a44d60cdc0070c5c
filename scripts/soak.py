"""Soak test: 10,000 frames through the threaded pipeline; RSS after warm-up and at the end (goal growth < 5 MB).

Usage: python scripts/soak.py [--model models/demo_int8.tflite] [--frames 10000] [--warmup 500]
Runs on an unpaced synthetic source with mAP evaluation, a JSONL sink (to /dev/null) and MJPEG encoding
(no clients), so every part of the loop is exercised. Saves JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from edge import system
from edge.detector import Detector
from edge.metrics import DetectionEvaluator
from edge.outputs import JsonlOutput, MjpegOutput
from edge.pipeline import Pipeline
from edge.sources import SyntheticSource, parse_resolution
from edge.stats import write_timestamped_report

GOAL_GROWTH_MB = 5.0


def rss_mb() -> float:
    """Resident set size of this process in MiB (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/demo_int8.tflite")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--resolution", default="320x240")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"soak: error: --model {args.model}: file not found", file=sys.stderr)
        return 2
    detector = Detector(args.model, num_threads=args.threads)
    samples: dict[int, float] = {}
    progress = tqdm(total=args.frames, desc="soak")

    def on_result(result: object) -> None:
        done = progress.n + 1
        progress.update()
        if done == args.warmup or done == args.frames or done % 1000 == 0:
            samples[done] = round(rss_mb(), 2)

    pipeline = Pipeline(
        SyntheticSource(parse_resolution(args.resolution), paced=False, seed=2),
        detector,
        [JsonlOutput(os.devnull), MjpegOutput("127.0.0.1", 0)],
        max_frames=args.frames,
        evaluator=DetectionEvaluator(num_classes=len(detector.labels)),
        on_result=on_result,
    )
    summary = pipeline.run()
    progress.close()
    after_warmup, at_end = samples.get(args.warmup), samples.get(args.frames)
    growth = None if after_warmup is None or at_end is None else at_end - after_warmup
    print(f"RSS after warm-up ({args.warmup} frames): {after_warmup} MiB")
    print(f"RSS at the end ({summary['frames']} frames): {at_end} MiB")
    if growth is not None:
        print(
            f"growth: {growth:+.2f} MiB (goal < {GOAL_GROWTH_MB}) {'OK' if growth < GOAL_GROWTH_MB else 'ABOVE GOAL'}"
        )
    result = {
        "benchmark": "soak",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "frames": summary["frames"],
        "warmup": args.warmup,
        "rss_mb": samples,
        "rss_growth_mb": growth,
        "goal_growth_mb": GOAL_GROWTH_MB,
        "pipeline": summary,
        "accuracy": pipeline.report()["accuracy"],
        "system": system.snapshot(),
    }
    print(f"saved {write_timestamped_report(args.out, 'soak', result)}")
    return 0 if growth is not None and growth < GOAL_GROWTH_MB else 1


if __name__ == "__main__":
    sys.exit(main())
