"""``make demo``: the whole pipeline on the built-in synthetic dataset, stage by stage, into ``demo/``.

Stages (each prints what it produced and how long it took; one whose outputs exist and are newer than its
inputs is skipped and says so):

1. ``data``    ``python -m train.synthetic`` -> the synthetic Pascal VOC dataset (``--data``);
2. ``train``   ``python -m train`` with a time budget -> ``--run`` (``best.keras``, ``metrics.json``); from
   scratch (``--restart``) when the run's ``run.json`` records other settings (EPOCHS, AUGMENT, TRAIN_ARGS, ...);
3. ``convert`` ``python -m convert`` -> ``demo/model_int8.tflite`` + accuracy table (``.accuracy.md/.json``);
4. ``edge``    ``python -m edge run`` on the synthetic camera -> ``demo/latency_report.json``, ``demo/detections.jsonl``;
5. ``frames``  the int8 model on synthetic camera frames -> ``demo/frame_*.png`` and ``demo/detections.gif``;
6. ``sweep``   ``scripts/bench_sweep.py`` on a 2x2 grid, latency only -> ``demo/sweep/``;

then a summary (``demo/summary.json``). The Makefile passes every setting (``mk/demo.mk``), so the demo
defaults live in one place. A failing stage stops the demo with a message naming the stage and the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from train.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/demo.py` without PYTHONPATH
    sys.path.insert(0, str(ROOT))

STAGES: tuple[str, ...] = ("data", "train", "convert", "edge", "frames", "sweep")


class StageError(RuntimeError):
    """A stage failed; the message names the stage, the command and what to do."""


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else -1.0


def is_current(outputs: Sequence[Path], inputs: Sequence[Path]) -> bool:
    """True when every output exists and is at least as new as every (existing) input."""
    if not outputs or not all(p.exists() for p in outputs):
        return False
    newest_input = max((_mtime(p) for p in inputs), default=-1.0)
    return min(_mtime(p) for p in outputs) >= newest_input


def train_settings_match(run: RunDir, flags: Sequence[str]) -> bool:
    """True when ``run``'s ``run.json`` records a ``python -m train`` run with the same settings as ``flags`` (parsed
    by train's own parser, so flag order and number spelling do not matter; ``--restart`` is ignored)."""
    from train.cli import build_parser

    try:
        recorded = shlex.split(run.read_raw()["command"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    if recorded[:3] != ["python", "-m", "train"]:
        return False
    parser = build_parser()
    try:
        before, now = vars(parser.parse_args(recorded[3:])), vars(parser.parse_args(list(flags)))
    except SystemExit:  # a flag this version of train does not know: not the same settings
        return False
    before.pop("restart")
    now.pop("restart")
    return before == now


def run_command(stage: str, command: Sequence[str], hint: str = "") -> None:
    """Run ``command`` (output streams to this terminal); ``StageError`` when it exits non-zero."""
    print(f"[{stage}] $ {shlex.join(command)}", flush=True)
    status = subprocess.run(list(command), cwd=ROOT, check=False).returncode
    if status != 0:
        raise StageError(f"stage '{stage}' failed: `{shlex.join(command)}` exited with status {status}. {hint}".strip())


class Demo:
    """The demo's stages over one set of arguments; ``results`` collects ``{stage, seconds, skipped, outputs}``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.data: Path = args.data
        self.run_dir = RunDir(args.run)
        self.model = self.out / "model_int8.tflite"
        self.accuracy_json = self.out / "model_int8.accuracy.json"
        self.accuracy_md = self.out / "model_int8.accuracy.md"
        self.report = self.out / "latency_report.json"
        self.jsonl = self.out / "detections.jsonl"
        self.gif = self.out / "detections.gif"
        self.sweep_dir = self.out / "sweep"
        self.results: list[dict] = []

    @property
    def python(self) -> str:
        return sys.executable

    # -- stages -------------------------------------------------------------------------------------------
    def stage_data(self) -> tuple[bool, list[Path]]:
        marker = self.data / "synthetic.json"
        before = _mtime(marker)
        command = [self.python, "-m", "train.synthetic", "--out", str(self.data)]
        command += ["--num-images", str(self.args.num_images), "--seed", str(self.args.seed)]
        command += ["--val-fraction", str(self.args.val_fraction)]
        run_command("data", command)
        if not (self.data / "ImageSets" / "Main" / "train.txt").is_file():
            raise StageError(f"stage 'data': {self.data}/ImageSets/Main/train.txt missing after generation")
        return before == _mtime(marker), [self.data]

    def stage_train(self) -> tuple[bool, list[Path]]:
        outputs = [self.run_dir.best, self.run_dir.metrics_json]
        flags = ["--data", str(self.data), "--alpha", f"{self.args.alpha:g}", "--size", str(self.args.size)]
        flags += ["--epochs", str(self.args.epochs), "--seed", str(self.args.seed), "--augment", self.args.augment]
        flags += ["--max-train-minutes", f"{self.args.max_train_minutes:g}"]
        flags += ["--out", str(self.run_dir.path), *shlex.split(self.args.train_args)]
        command = [self.python, "-m", "train", *flags]
        if self.run_dir.has_run_json() and not train_settings_match(self.run_dir, flags):
            print(
                f"[train] {self.run_dir.run_json} records other settings: training again from scratch (--restart)",
                flush=True,
            )
            command.append("--restart")
        elif is_current(outputs, [self.data / "synthetic.json"]):
            return True, outputs
        run_command("train", command, "Fix the error above, or pass another RUN=runs/NAME.")
        for path in outputs:
            if not path.is_file():
                raise StageError(f"stage 'train': {path} missing after training (expected by docs/ARCHITECTURE.md)")
        return False, outputs

    def stage_convert(self) -> tuple[bool, list[Path]]:
        outputs = [self.model, self.accuracy_json, self.accuracy_md]
        if is_current(outputs, [self.run_dir.best]):
            return True, outputs
        command = [self.python, "-m", "convert", str(self.run_dir.path), "--quant", "int8", "--out", str(self.model)]
        command += ["--data", str(self.data), "--compare", "float32,int8"]
        command += ["--calibration-images", str(self.args.calibration_images)]
        if self.args.max_map_drop is not None:
            command += ["--max-map-drop", f"{self.args.max_map_drop:g}"]
        run_command(
            "convert",
            command,
            "Exit status 1 is the int8 accuracy gate: train longer (TRAIN_MINUTES, EPOCHS) or allow more (MAX_MAP_DROP).",
        )
        for path in outputs:
            if not path.is_file():
                raise StageError(f"stage 'convert': {path} missing after `python -m convert`")
        return False, outputs

    def stage_edge(self) -> tuple[bool, list[Path]]:
        outputs = [self.report, self.jsonl]
        if is_current(outputs, [self.model]):
            return True, outputs
        command = [self.python, "-m", "edge", "run", "--model", str(self.model), "--source", "synthetic"]
        command += ["--frames", str(self.args.frames), "--seed", str(self.args.seed), "--quiet"]
        command += ["--report", str(self.report), "--jsonl", str(self.jsonl)]
        run_command("edge", command)
        for path in outputs:
            if not path.is_file():
                raise StageError(f"stage 'edge': {path} missing after `python -m edge run`")
        return False, outputs

    def stage_frames(self) -> tuple[bool, list[Path]]:
        pngs = [self.out / f"frame_{i}.png" for i in range(self.args.png_frames)]
        outputs = [*pngs, self.gif]
        if is_current(outputs, [self.model]):
            return True, outputs
        write_annotated_frames(self.model, pngs, self.gif, self.args.gif_frames, self.args.seed)
        return False, outputs

    def stage_sweep(self) -> tuple[bool, list[Path]]:
        outputs = [self.sweep_dir / "sweep.csv", self.sweep_dir / "latency_vs_macs.png"]
        if is_current(outputs, [ROOT / "scripts" / "bench_sweep.py"]):
            return True, outputs
        command = [
            self.python,
            str(ROOT / "scripts" / "bench_sweep.py"),
            "--latency-only",
            "--out",
            str(self.sweep_dir),
        ]
        command += ["--alphas", self.args.sweep_alphas, "--sizes", self.args.sweep_sizes]
        command += ["--runs", "10", "--min-seconds", "0.2", "--e2e-frames", "20", "--e2e-seconds", "1"]
        run_command("sweep", command)
        return False, [*outputs, self.sweep_dir / "fps_vs_macs.png", self.sweep_dir / "sweep.md"]

    # -- driver -------------------------------------------------------------------------------------------
    def run(self, stages: Sequence[str]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        steps: dict[str, Callable[[], tuple[bool, list[Path]]]] = {
            name: getattr(self, f"stage_{name}") for name in STAGES
        }
        for name in stages:
            print(f"\n=== [{name}] ===", flush=True)
            start = time.perf_counter()
            skipped, outputs = steps[name]()
            seconds = time.perf_counter() - start
            state = "up to date, skipped" if skipped else "done"
            print(f"[{name}] {state} in {seconds:.1f} s -> {', '.join(str(p) for p in outputs)}", flush=True)
            self.results.append(
                {"stage": name, "seconds": round(seconds, 2), "skipped": skipped, "outputs": [str(p) for p in outputs]}
            )

    def summary(self) -> dict:
        """Stage timings plus the headline numbers read back from the files the stages wrote."""
        summary: dict = {"stages": self.results, "total_s": round(sum(r["seconds"] for r in self.results), 1)}
        if self.run_dir.metrics_json.is_file():
            metrics = self.run_dir.read_metrics()
            summary["train"] = {k: metrics.get(k) for k in ("best_epoch", "val_map50", "val_coco_map")}
        if self.accuracy_json.is_file():
            rows = json.loads(self.accuracy_json.read_text()).get("results", [])
            summary["accuracy"] = {r["variant"]: {"map50": r["map50"], "size_bytes": r["size_bytes"]} for r in rows}
        if self.report.is_file():
            report = json.loads(self.report.read_text())
            summary["edge"] = {
                "frames": report.get("frames"),
                "average_fps": report.get("average_fps"),
                "end_to_end_ms": report.get("end_to_end_ms"),
                "invoke_ms": (report.get("stages_ms") or {}).get("invoke"),
                "map50_vs_synthetic_truth": (report.get("accuracy") or {}).get("map50"),
            }
        return summary


def write_annotated_frames(model: Path, pngs: Sequence[Path], gif: Path, num_frames: int, seed: int) -> None:
    """Run ``model`` on ``num_frames`` 640x480 synthetic camera frames; save evenly spaced ones as ``pngs``
    and every frame (downscaled to 320x240) as an animated ``gif``. Detections drawn by
    ``edge.outputs.draw_detections``; the synthetic camera's ground truth as thin white boxes."""
    import cv2
    from PIL import Image

    from edge.boxes import normalized_to_pixels
    from edge.detector import Detector
    from edge.outputs import draw_detections
    from edge.sources import SyntheticSource

    if num_frames < len(pngs):
        raise StageError(f"--gif-frames {num_frames}: expected at least --png-frames ({len(pngs)})")
    detector = Detector(model)
    keep = {round(i * (num_frames - 1) / max(1, len(pngs) - 1)): path for i, path in enumerate(pngs)}
    frames: list[Image.Image] = []
    with SyntheticSource((640, 480), paced=False, seed=seed, num_frames=num_frames) as source:
        index = 0
        while (frame := source.read()) is not None:
            detections = detector(frame.image)
            bgr = draw_detections(
                frame.image, detections.pixel_boxes(), detections.scores, detections.class_ids, detector.labels
            )
            if frame.ground_truth is not None:  # the synthetic camera's ground truth, thin white
                height, width = frame.image.shape[:2]
                for x0, y0, x1, y1 in normalized_to_pixels(frame.ground_truth.boxes, height, width).round().astype(int):
                    cv2.rectangle(bgr, (int(x0), int(y0)), (int(x1), int(y1)), (255, 255, 255), 1, cv2.LINE_AA)
            if index in keep and not cv2.imwrite(str(keep[index]), bgr):
                raise StageError(f"stage 'frames': cannot write {keep[index]}")
            small = cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA)
            frames.append(Image.fromarray(small[:, :, ::-1]))
            index += 1
    if not frames:
        raise StageError("stage 'frames': the synthetic source produced no frames")
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=66, loop=0, optimize=True)


def print_summary(summary: dict, out: Path) -> None:
    print("\n=== demo summary ===")
    for row in summary["stages"]:
        state = "skipped (up to date)" if row["skipped"] else "ran"
        print(f"  {row['stage']:<8} {row['seconds']:7.1f} s  {state}")
    print(f"  {'total':<8} {summary['total_s']:7.1f} s")
    if "train" in summary:
        best = summary["train"]["val_map50"]
        best_text = f"{100 * best:.2f}" if isinstance(best, (int, float)) else "n/a"
        print(f"  training: best val mAP@0.5 {best_text} (epoch {summary['train']['best_epoch']})")
    for variant, row in summary.get("accuracy", {}).items():
        print(f"  {variant:<8} mAP@0.5 {100 * row['map50']:.2f}  ({row['size_bytes'] / 1024:.0f} KiB)")
    if "edge" in summary:
        edge = summary["edge"]
        e2e = (edge.get("end_to_end_ms") or {}).get("p50")
        print(
            f"  edge loop: {edge['frames']} frames, {edge['average_fps']} FPS, end-to-end p50 {e2e} ms, "
            f"mAP@0.5 vs synthetic truth {edge['map50_vs_synthetic_truth']}"
        )
    print(
        f"  everything is in {out}/ (summary.json, model_int8.tflite, accuracy table, latency report, "
        "frame_*.png, detections.gif, sweep/)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__.splitlines()[0])
    required = parser.add_argument_group("settings passed by `make demo` (the Makefile holds the defaults)")
    required.add_argument("--data", type=Path, required=True, help="synthetic dataset folder (DATA)")
    required.add_argument("--num-images", type=int, required=True, help="images to generate (NUM_IMAGES)")
    required.add_argument("--val-fraction", type=float, required=True, help="images held out for val (VAL_FRACTION)")
    required.add_argument("--seed", type=int, required=True, help="seed for data, training and camera (SEED)")
    required.add_argument("--run", type=Path, required=True, help="training run directory (RUN)")
    required.add_argument("--alpha", type=float, required=True, help="width multiplier (ALPHA)")
    required.add_argument("--size", type=int, required=True, help="input size in pixels (SIZE)")
    required.add_argument("--epochs", type=int, required=True, help="most epochs (EPOCHS)")
    required.add_argument("--augment", required=True, help="augmentation preset (AUGMENT)")
    required.add_argument("--max-train-minutes", type=float, required=True, help="training budget (TRAIN_MINUTES)")
    parser.add_argument("--train-args", default="", help="more `python -m train` flags, one string (TRAIN_ARGS)")
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default demo)")
    parser.add_argument("--calibration-images", type=int, default=300, help="int8 calibration images")
    parser.add_argument("--max-map-drop", type=float, default=None, help="int8 accuracy gate in mAP points")
    parser.add_argument("--frames", type=int, default=300, help="frames through the edge loop")
    parser.add_argument("--png-frames", type=int, default=4, help="annotated PNG frames to keep")
    parser.add_argument("--gif-frames", type=int, default=60, help="frames in the animated GIF")
    parser.add_argument("--sweep-alphas", default="0.25,0.5", help="sweep grid widths")
    parser.add_argument("--sweep-sizes", default="128,160", help="sweep grid input sizes")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma list, subset of {','.join(STAGES)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown {unknown}; expected a comma list of {', '.join(STAGES)}")
    demo = Demo(args)
    started = time.perf_counter()
    try:
        demo.run(stages)
    except StageError as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        return 1
    summary = demo.summary()
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
