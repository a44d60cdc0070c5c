"""Pipeline benchmark: interpreter-only FPS vs end-to-end FPS on an unpaced synthetic source (goal ratio >= 0.9).

Usage: python scripts/bench_pipeline.py [--model models/demo_int8.tflite] [--frames 1000] [--rounds 5] [--threads N]

Both rates use the same ``Detector`` (same interpreter, same threads). Interpreter-only: back-to-back
``Detector.invoke`` (set_tensor, invoke, get_tensor: the pipeline's "invoke" stage) on one preprocessed
frame. End to end: the threaded ``Pipeline`` (capture, preprocess, invoke, decode + NMS) on an unpaced
synthetic 640x480 source. On a shared machine the speed drifts by several percent from one second to
the next, so the measurements alternate: interpreter-only, end-to-end, interpreter-only, ... and each
round's ratio divides its end-to-end rate by the mean of the interpreter-only rates just before and
after it. Prints every round, the median rates and the median ratio; saves JSON under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
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
from edge.stats import write_timestamped_report

GOAL_RATIO = 0.9
WARMUP_FRAMES = 20


def interpreter_only_fps(detector: Detector, image: np.ndarray, frames: int) -> float:
    """Back-to-back ``invoke`` on one preprocessed input (no capture, pre/postprocessing): frames per second."""
    inputs = detector.preprocess(image)
    for _ in range(WARMUP_FRAMES):
        detector.invoke(inputs)
    start = time.perf_counter()
    for _ in range(frames):
        detector.invoke(inputs)
    return frames / (time.perf_counter() - start)


def end_to_end_fps(detector: Detector, resolution: tuple[int, int], frames: int) -> dict:
    """Frames per second of the threaded pipeline on an unpaced synthetic source (after warm-up frames)."""
    marks: list[float] = []
    pipeline = Pipeline(
        SyntheticSource(resolution, paced=False, seed=1, prerender=60),
        detector,
        max_frames=frames + WARMUP_FRAMES,
        on_result=lambda _result: marks.append(time.perf_counter()),
    )
    summary = pipeline.run()
    measured = marks[WARMUP_FRAMES - 1 :]
    return {"fps": (len(measured) - 1) / (measured[-1] - measured[0]), "summary": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/demo_int8.tflite")
    parser.add_argument("--frames", type=int, default=1000, help="frames per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="end-to-end runs, each between two interpreter-only runs")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--resolution", default="640x480")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"bench_pipeline: error: --model {args.model}: file not found", file=sys.stderr)
        return 2
    if args.frames < 2 or args.rounds < 1:
        print("bench_pipeline: error: --frames must be >= 2 and --rounds >= 1", file=sys.stderr)
        return 2
    resolution = parse_resolution(args.resolution)
    detector = Detector(args.model, num_threads=args.threads)
    with SyntheticSource(resolution, paced=False) as source:
        image = source.read().image
    interpreter = [interpreter_only_fps(detector, image, args.frames)]
    rounds = []
    for index in tqdm(range(args.rounds), desc="rounds"):
        e2e = end_to_end_fps(detector, resolution, args.frames)
        interpreter.append(interpreter_only_fps(detector, image, args.frames))
        reference = (interpreter[-2] + interpreter[-1]) / 2
        rounds.append({"interpreter_only_fps": reference, "end_to_end_fps": e2e["fps"], "pipeline": e2e["summary"]})
        tqdm.write(
            f"round {index + 1}: interpreter-only {reference:8.2f} FPS (mean of before/after), "
            f"end-to-end {e2e['fps']:8.2f} FPS, ratio {e2e['fps'] / reference:.3f}"
        )
    interpreter_fps = statistics.median(interpreter)
    e2e_fps = statistics.median(r["end_to_end_fps"] for r in rounds)
    ratio = statistics.median(r["end_to_end_fps"] / r["interpreter_only_fps"] for r in rounds)
    print(f"interpreter-only FPS: {interpreter_fps:8.2f} (median of {len(interpreter)})")
    print(f"end-to-end FPS:       {e2e_fps:8.2f} (median of {args.rounds})")
    print(
        f"ratio:                {ratio:8.3f} (median of the rounds; goal >= {GOAL_RATIO}) "
        f"{'OK' if ratio >= GOAL_RATIO else 'BELOW GOAL'}"
    )
    result = {
        "benchmark": "pipeline",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "threads": args.threads,
        "resolution": list(resolution),
        "frames": args.frames,
        "interpreter_only_fps": round(interpreter_fps, 3),
        "end_to_end_fps": round(e2e_fps, 3),
        "ratio": round(ratio, 4),
        "ratio_is": "median over rounds of end-to-end FPS / mean interpreter-only FPS before and after it",
        "goal_ratio": GOAL_RATIO,
        "rounds": [
            {
                "interpreter_only_fps": round(r["interpreter_only_fps"], 3),
                "end_to_end_fps": round(r["end_to_end_fps"], 3),
                "ratio": round(r["end_to_end_fps"] / r["interpreter_only_fps"], 4),
            }
            for r in rounds
        ],
        "pipeline": rounds[-1]["pipeline"],
        "system": system.snapshot(),
    }
    print(f"saved {write_timestamped_report(args.out, 'pipeline', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
