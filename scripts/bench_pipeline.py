"""Pipeline benchmark: interpreter-only FPS vs end-to-end FPS on an unpaced synthetic source (goal ratio >= 0.9).

Usage: python scripts/bench_pipeline.py [--model models/demo_int8.tflite] [--frames 300] [--threads N]
Prints both rates and their ratio, saves JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge import system
from edge.detector import Detector
from edge.pipeline import Pipeline
from edge.sources import SyntheticSource, parse_resolution

GOAL_RATIO = 0.9


def interpreter_only_fps(detector: Detector, image: np.ndarray, frames: int) -> float:
    """Back-to-back ``invoke`` on one preprocessed input (no capture, pre/postprocessing): frames per second."""
    inputs = detector.preprocess(image)
    for _ in range(5):
        detector.invoke(inputs)
    start = time.perf_counter()
    for _ in tqdm(range(frames), desc="interpreter only", leave=False):
        detector.invoke(inputs)
    return frames / (time.perf_counter() - start)


def end_to_end_fps(detector: Detector, resolution: tuple[int, int], frames: int) -> dict:
    """Frames per second of the threaded pipeline on an unpaced synthetic source (after 10 warm-up frames)."""
    progress = tqdm(total=frames + 10, desc="end to end", leave=False)
    marks: list[float] = []

    def on_result(_result: object) -> None:
        marks.append(time.perf_counter())
        progress.update()

    pipeline = Pipeline(
        SyntheticSource(resolution, paced=False, seed=1, prerender=60),
        detector,
        max_frames=frames + 10,
        on_result=on_result,
    )
    summary = pipeline.run()
    progress.close()
    measured = marks[10:]
    fps = (len(measured) - 1) / (measured[-1] - measured[0])
    return {"fps": fps, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/demo_int8.tflite")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--resolution", default="640x480")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"bench_pipeline: error: --model {args.model}: file not found", file=sys.stderr)
        return 2
    resolution = parse_resolution(args.resolution)
    detector = Detector(args.model, num_threads=args.threads)
    with SyntheticSource(resolution, paced=False) as source:
        image = source.read().image
    interpreter_fps = interpreter_only_fps(detector, image, args.frames)
    e2e = end_to_end_fps(detector, resolution, args.frames)
    ratio = e2e["fps"] / interpreter_fps
    print(f"interpreter-only FPS: {interpreter_fps:8.2f}")
    print(f"end-to-end FPS:       {e2e['fps']:8.2f}")
    print(f"ratio:                {ratio:8.3f} (goal >= {GOAL_RATIO}) {'OK' if ratio >= GOAL_RATIO else 'BELOW GOAL'}")
    result = {
        "benchmark": "pipeline",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "threads": args.threads,
        "resolution": list(resolution),
        "frames": args.frames,
        "interpreter_only_fps": round(interpreter_fps, 3),
        "end_to_end_fps": round(e2e["fps"], 3),
        "ratio": round(ratio, 4),
        "goal_ratio": GOAL_RATIO,
        "pipeline": e2e["summary"],
        "system": system.snapshot(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pipeline_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
