"""Pipeline benchmark: interpreter-only FPS vs end-to-end FPS, on a video file or the synthetic source (goal ratio >= 0.9).

Usage: python scripts/bench_pipeline.py [--model models/demo_int8.tflite] [--frames 1000] [--rounds 5] [--threads N]
       [--video bench/pipeline_640x480.mp4]

With ``--video`` the end-to-end runs read that file (looped) through ``OpenCVSource``, as ``python -m edge run
--source FILE`` does, and the file's decode-alone rate is measured too; a missing file is first written from the
seeded synthetic scene (mp4v, 600 frames at ``--resolution``).

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
from edge.image import swap_red_blue
from edge.pipeline import Pipeline
from edge.sources import FrameSource, OpenCVSource, SyntheticSource, parse_resolution
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


def write_video(path: Path, resolution: tuple[int, int], frames: int = 600) -> None:
    """Write ``frames`` frames of the seeded synthetic scene to ``path`` (mp4v) at ``resolution`` (width, height)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, resolution)
    with SyntheticSource(resolution, paced=False, seed=1) as source:
        for _ in tqdm(range(frames), desc=f"writing {path}", leave=False):
            writer.write(swap_red_blue(source.read().image))
    writer.release()


def decode_only_fps(video: Path, frames: int) -> float:
    """Frames per second of ``cv2.VideoCapture.read`` alone on ``video`` (restarting at its end)."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    read = 0
    start = time.perf_counter()
    while read < frames:
        ok, _ = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        read += 1
    elapsed = time.perf_counter() - start
    capture.release()
    return frames / elapsed


def make_source(resolution: tuple[int, int], video: Path | None) -> FrameSource:
    """The end-to-end source: ``video`` looped through ``OpenCVSource``, else the unpaced synthetic scene."""
    if video is not None:
        return OpenCVSource(str(video), loop=True)
    return SyntheticSource(resolution, paced=False, seed=1, prerender=60)


def end_to_end_fps(detector: Detector, resolution: tuple[int, int], frames: int, video: Path | None = None) -> dict:
    """Frames per second of the threaded pipeline on ``make_source`` (after warm-up frames)."""
    marks: list[float] = []
    pipeline = Pipeline(
        make_source(resolution, video),
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
    parser.add_argument("--video", type=Path, help="video file for the end-to-end runs (written first when missing)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    if not Path(args.model).is_file():
        print(f"bench_pipeline: error: --model {args.model}: file not found", file=sys.stderr)
        return 2
    if args.frames < 2 or args.rounds < 1:
        print("bench_pipeline: error: --frames must be >= 2 and --rounds >= 1", file=sys.stderr)
        return 2
    resolution = parse_resolution(args.resolution)
    if args.video is not None and not args.video.is_file():
        write_video(args.video, resolution)
    decode_fps = decode_only_fps(args.video, args.frames) if args.video is not None else None
    if decode_fps is not None:
        print(f"decode-only FPS ({args.video}): {decode_fps:8.2f}")
    detector = Detector(args.model, num_threads=args.threads)
    with SyntheticSource(resolution, paced=False) as source:
        image = source.read().image
    interpreter = [interpreter_only_fps(detector, image, args.frames)]
    rounds = []
    for index in tqdm(range(args.rounds), desc="rounds"):
        e2e = end_to_end_fps(detector, resolution, args.frames, args.video)
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
        "source": str(args.video) if args.video is not None else "synthetic (unpaced)",
        "decode_only_fps": None if decode_fps is None else round(decode_fps, 3),
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
