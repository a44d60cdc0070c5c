"""Width x resolution multiplier sweep: size, multiply-adds, latency, end-to-end FPS (and mAP when trained).

For every cell ``alpha x input_size`` of the grid (default alpha 0.25/0.5/0.75/1.0 x size 128/160/192/224/300):

* parameters and multiply-adds (``train.summary``, the MobileNet paper's counting);
* float32 and int8 ``.tflite`` file sizes (``convert.converter.convert``; the checkpoint
  ``RUNS_DIR/a0.50_s160/best.keras`` when it exists, else an untrained model calibrated on a few
  synthetic scenes -- such cells are marked ``latency-only``);
* interpreter latency p50/p95 in ms, float32 vs int8, with 1 thread and with all cores (``edge.runtime``);
* end-to-end FPS of the int8 model through the threaded edge loop on an unpaced synthetic camera;
* for trained cells, mAP@0.5 of float32 vs int8 TFLite on the run's validation split.

A cell that fails is recorded with its error and the sweep goes on. Converted models are cached under
``.cache/bench_sweep/`` keyed by cell, checkpoint and a hash of the conversion code.

Outputs (``--out``, default ``bench/results/<host>/``): ``sweep.csv``, ``sweep.md``, ``latency_vs_macs.png``,
``fps_vs_macs.png`` and, when a cell has accuracy, ``accuracy_vs_latency.png``.

Usage: ``python scripts/bench_sweep.py [--alphas 0.25,0.5] [--sizes 128,160] [--runs 20] [--runs-dir runs/sweep]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/bench_sweep.py` without PYTHONPATH
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench_sweep")

ALPHAS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
SIZES: tuple[int, ...] = (128, 160, 192, 224, 300)
QUANTS: tuple[str, ...] = ("float32", "int8")
STATUS_TRAINED, STATUS_LATENCY_ONLY, STATUS_ERROR = "trained", "latency-only", "error"
COLUMNS: tuple[str, ...] = (
    "cell",
    "alpha",
    "input_size",
    "status",
    "params",
    "macs",
    "num_anchors",
    "float32_bytes",
    "int8_bytes",
    "float32_p50_ms_1t",
    "float32_p95_ms_1t",
    "int8_p50_ms_1t",
    "int8_p95_ms_1t",
    "float32_p50_ms_mt",
    "float32_p95_ms_mt",
    "int8_p50_ms_mt",
    "int8_p95_ms_mt",
    "threads",
    "e2e_fps",
    "map50_float",
    "map50_int8",
    "checkpoint",
    "seconds",
    "error",
)
"""CSV columns. Sizes in bytes, latencies in ms per ``invoke`` (``_1t``: 1 thread, ``_mt``: ``threads``
threads), ``macs``: multiply-adds per image, ``map50_*``: VOC mAP@0.5 in [0, 1] (empty when latency-only)."""

CODE_FILES: tuple[str, ...] = (
    "convert/converter.py",
    "edge/metadata.py",
    "edge/anchors.py",
    "edge/boxes.py",
    "train/model.py",
    "train/config.py",
)
"""Files whose content keys the converted-model cache (a change to any of them reconverts)."""


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """How each cell is measured."""

    runs: int = 20
    """Least timed ``invoke`` calls per latency measurement (after ``warmup``)."""
    min_seconds: float = 0.5
    """Least seconds of timed calls per latency measurement (more runs for fast models: less noise)."""
    warmup: int = 3
    e2e_frames: int = 40
    """Least frames timed through the edge loop (after 5 warm-up frames)."""
    e2e_seconds: float = 2.0
    """Least seconds the edge loop is timed."""
    calibration_images: int = 8
    threads: int = 0
    """Threads for the "all cores" measurements; 0: every core this process may use."""
    eval_images: int = 200
    """Validation images scored per variant in trained cells."""
    runs_dir: Path | None = Path("runs/sweep")
    cache_dir: Path = Path(".cache/bench_sweep")
    labels: tuple[str, ...] = ()
    """Labels of untrained cells (default ``edge.synthetic_scene.CLASS_NAMES``)."""

    def all_threads(self) -> int:
        if self.threads > 0:
            return self.threads
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cell_name(alpha: float, input_size: int) -> str:
    """``a0.50_s160``: the cell's folder name under ``--runs-dir`` and in the cache."""
    return f"a{alpha:.2f}_s{input_size}"


def code_hash() -> str:
    """sha256 (16 hex digits) of ``CODE_FILES`` and the TensorFlow version: the converter's identity."""
    import tensorflow as tf

    digest = hashlib.sha256(tf.__version__.encode())
    for name in CODE_FILES:
        path = ROOT / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()[:16]


def find_checkpoint(runs_dir: Path | None, alpha: float, input_size: int) -> Path | None:
    """``runs_dir/<cell>/best.keras`` when it exists (with its ``run.json``), else None."""
    if runs_dir is None:
        return None
    from train.rundir import RunDir

    run = RunDir(runs_dir / cell_name(alpha, input_size))
    return run.best if run.best.is_file() and run.has_run_json() else None


def synthetic_calibration(input_size: tuple[int, int], count: int, seed: int = 12345) -> list[np.ndarray]:
    """``count`` synthetic scenes (``edge.synthetic_scene``, 320x240 like the dataset) resized to ``input_size``.

    Returns uint8 RGB ``(H, W, 3)`` images, the calibration input ``convert.converter.convert`` expects.
    """
    from edge.image import resize_rgb
    from edge.synthetic_scene import generate_scene

    rng = np.random.default_rng(seed)
    height, width = input_size
    return [resize_rgb(generate_scene(rng, 240, 320).image, height, width) for _ in range(count)]


def _percentiles(samples_ms: Sequence[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(samples_ms, dtype=np.float64), [50, 95])
    return round(float(p50), 3), round(float(p95), 3)


def interpreter_latency(
    model_path: Path, num_threads: int, runs: int, warmup: int, min_seconds: float = 0.0
) -> tuple[float, float]:
    """``(p50, p95)`` milliseconds of ``invoke`` on a fixed seeded input, after ``warmup`` untimed calls;
    at least ``runs`` timed calls and at least ``min_seconds`` of them."""
    from edge.runtime import load_interpreter

    interpreter = load_interpreter(model_path, num_threads=num_threads).interpreter
    (detail,) = interpreter.get_input_details()
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        tensor = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(detail["dtype"])
    else:
        tensor = rng.uniform(0, 255, size=detail["shape"]).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], tensor)
    for _ in range(warmup):
        interpreter.invoke()
    samples: list[float] = []
    while len(samples) < runs or sum(samples) < min_seconds * 1e3:
        start = time.perf_counter()
        interpreter.invoke()
        samples.append((time.perf_counter() - start) * 1e3)
    return _percentiles(samples)


def end_to_end_fps(model_path: Path, num_threads: int, frames: int, warmup: int = 5, min_seconds: float = 0.0) -> float:
    """Frames per second of the threaded edge loop (capture, preprocess, invoke, decode+NMS) on an unpaced
    640x480 synthetic camera, measured over at least ``frames`` results and ``min_seconds`` after ``warmup`` results."""
    from edge.detector import Detector
    from edge.pipeline import Pipeline
    from edge.sources import SyntheticSource

    marks: list[float] = []
    detector = Detector(model_path, num_threads=num_threads)
    source = SyntheticSource((640, 480), paced=False, seed=1, prerender=30)
    pipeline: Pipeline | None = None

    def on_result(_result: object) -> None:
        marks.append(time.perf_counter())
        done = len(marks) - warmup >= frames and marks[-1] - marks[min(warmup, len(marks) - 1)] >= min_seconds
        if done and pipeline is not None:
            pipeline.stop("measured")

    pipeline = Pipeline(source, detector, on_result=on_result)
    pipeline.run()
    measured = marks[warmup:]
    if len(measured) < 2:
        raise RuntimeError(f"edge loop produced {len(marks)} results; expected at least {frames + warmup}")
    return round((len(measured) - 1) / (measured[-1] - measured[0]), 3)


def _cached_models(
    model, config, labels: list[str], key_parts: dict, settings: SweepSettings, cell: str
) -> dict[str, Path]:
    """float32 and int8 ``.tflite`` for ``model`` from the cache, converting what is missing."""
    from convert.converter import convert
    from edge.atomic import atomic_write_bytes

    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    folder = settings.cache_dir / cell
    paths = {}
    for quant in QUANTS:
        path = folder / f"{quant}_{key}.tflite"
        if not path.is_file():
            calibration = (
                synthetic_calibration(config.input_size, settings.calibration_images) if quant == "int8" else None
            )
            atomic_write_bytes(path, convert(model, config, labels, quant, calibration))
        else:
            log.info("%s: cached %s", cell, path)
        paths[quant] = path
    return paths


def _accuracy(run_dir: Path, config, labels: list[str], paths: dict[str, Path], eval_images: int) -> dict:
    """mAP@0.5 of the float32 and int8 TFLite models on the run's validation split (``eval_images`` first images)."""
    from convert.accuracy import evaluate_tflite
    from train.datasets import load_dataset
    from train.rundir import RunDir

    run = RunDir(run_dir)
    data = run.data_path()
    if not data.exists():
        raise FileNotFoundError(f"{run.run_json}: field 'data' = {str(data)!r} is not an existing dataset folder")
    split = run.read_info().split("val")
    records = load_dataset(data, split, labels=labels, skip_bad=True).records[:eval_images]
    if not records:
        raise ValueError(f"{data}: split '{split}' has no images")
    result = {}
    for quant, key in (("float32", "map50_float"), ("int8", "map50_int8")):
        result[key] = round(evaluate_tflite(quant, paths[quant].read_bytes(), records, config, labels).map50, 4)
    return result


def measure_cell(alpha: float, input_size: int, settings: SweepSettings, converter_hash: str) -> dict:
    """All measurements of one cell as a row keyed by ``COLUMNS`` (raises on failure)."""
    import keras

    from convert.checkpoint import load_detector
    from edge.synthetic_scene import CLASS_NAMES
    from train.config import ModelConfig
    from train.model import build_ssd
    from train.rundir import RunDir
    from train.summary import summarize_model

    cell = cell_name(alpha, input_size)
    keras.backend.clear_session()
    checkpoint = find_checkpoint(settings.runs_dir, alpha, input_size)
    if checkpoint is not None:
        info = RunDir(checkpoint.parent).read_info()
        config, labels = info.config, info.labels
        if config.alpha != alpha or config.input_size != (input_size, input_size):
            raise ValueError(
                f"{checkpoint.parent / 'run.json'}: field 'model' has alpha={config.alpha} "
                f"input_size={list(config.input_size)}; expected alpha={alpha} input_size=[{input_size}, {input_size}]"
            )
        model = load_detector(checkpoint, config)
        stat = checkpoint.stat()
        identity = {"checkpoint": str(checkpoint.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    else:
        labels = list(settings.labels or CLASS_NAMES)
        config = ModelConfig(alpha=alpha, input_size=(input_size, input_size), num_classes=len(labels))
        keras.utils.set_random_seed(0)
        model = build_ssd(config)
        identity = {"checkpoint": None, "num_classes": len(labels), "seed": 0}
    summary = summarize_model(model, config)
    key_parts = {
        "cell": cell,
        "code": converter_hash,
        "calibration_images": settings.calibration_images,
        "config": config.to_dict(),
        **identity,
    }
    paths = _cached_models(model, config, labels, key_parts, settings, cell)
    threads = settings.all_threads()
    row: dict = {
        "cell": cell,
        "alpha": alpha,
        "input_size": input_size,
        "status": STATUS_TRAINED if checkpoint is not None else STATUS_LATENCY_ONLY,
        "params": summary["detector_params"],
        "macs": summary["detector_macs"],
        "num_anchors": summary["num_anchors"],
        "threads": threads,
        "checkpoint": str(checkpoint) if checkpoint is not None else "",
    }
    for quant in QUANTS:
        row[f"{quant}_bytes"] = paths[quant].stat().st_size
        for suffix, count in (("1t", 1), ("mt", threads)):
            p50, p95 = interpreter_latency(paths[quant], count, settings.runs, settings.warmup, settings.min_seconds)
            row[f"{quant}_p50_ms_{suffix}"], row[f"{quant}_p95_ms_{suffix}"] = p50, p95
    row["e2e_fps"] = end_to_end_fps(paths["int8"], threads, settings.e2e_frames, min_seconds=settings.e2e_seconds)
    if checkpoint is not None:
        row.update(_accuracy(checkpoint.parent, config, labels, paths, settings.eval_images))
    del model
    return row


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:300]


def run_sweep(alphas: Sequence[float], sizes: Sequence[int], settings: SweepSettings) -> list[dict]:
    """Measure every ``alpha x size`` cell (tqdm progress); a failing cell becomes a row with ``status=error``."""
    converter_hash = code_hash()
    cells = [(alpha, size) for alpha in alphas for size in sizes]
    rows = []
    progress = tqdm(cells, desc="sweep", unit="cell")
    for alpha, size in progress:
        cell = cell_name(alpha, size)
        progress.set_postfix_str(cell)
        start = time.perf_counter()
        try:
            row = measure_cell(alpha, size, settings, converter_hash)
        except Exception as exc:  # noqa: BLE001 - one broken cell must not end the sweep
            log.error("cell %s failed: %s", cell, _one_line(exc))
            tqdm.write(f"cell {cell}: FAILED ({_one_line(exc)})")
            row = {"cell": cell, "alpha": alpha, "input_size": size, "status": STATUS_ERROR, "error": _one_line(exc)}
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append({column: row.get(column, "") for column in COLUMNS})
    return rows


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """``rows`` as CSV with header ``COLUMNS`` (empty cells for missing values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    """Rows of a ``sweep.csv`` (values as strings, as ``write_csv`` wrote them); ``ValueError`` on other columns."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: header {reader.fieldnames} is not a sweep.csv header; expected {list(COLUMNS)}")
        return list(reader)


def _fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    if value in ("", None) or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(float(value) * scale, spec)


def markdown_table(rows: Sequence[dict]) -> str:
    """Markdown table of a sweep: one row per cell; latencies p50 (p95) in ms, mAP in percent."""
    threads = next((r["threads"] for r in rows if r.get("threads") not in ("", None)), "N")
    lines = [
        f"| cell | status | params (M) | MACs (M) | float32 / int8 size (KiB) | float32 1 thr ms | int8 1 thr ms "
        f"| float32 {threads} thr ms | int8 {threads} thr ms | e2e FPS (int8) | mAP@0.5 float / int8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["status"] == STATUS_ERROR:
            lines.append(f"| {r['cell']} | error: {r['error'].replace('|', '/')} |" + " |" * 9)
            continue

        def latency(quant: str, suffix: str, r: dict = r) -> str:
            return f"{_fmt(r[f'{quant}_p50_ms_{suffix}'])} ({_fmt(r[f'{quant}_p95_ms_{suffix}'])})"

        accuracy = (
            f"{_fmt(r['map50_float'], scale=100)} / {_fmt(r['map50_int8'], scale=100)}"
            if r["status"] == STATUS_TRAINED
            else "latency-only"
        )
        lines.append(
            f"| {r['cell']} | {r['status']} | {_fmt(r['params'], '.2f', 1e-6)} | {_fmt(r['macs'], '.0f', 1e-6)} "
            f"| {_fmt(r['float32_bytes'], '.0f', 1 / 1024)} / {_fmt(r['int8_bytes'], '.0f', 1 / 1024)} "
            f"| {latency('float32', '1t')} | {latency('int8', '1t')} | {latency('float32', 'mt')} "
            f"| {latency('int8', 'mt')} | {_fmt(r['e2e_fps'])} | {accuracy} |"
        )
    return "\n".join(lines)


def _ok(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r["status"] != STATUS_ERROR]


def _by_alpha(rows: Sequence[dict]) -> dict[float, list[dict]]:
    groups: dict[float, list[dict]] = {}
    for r in sorted(_ok(rows), key=lambda r: (float(r["alpha"]), float(r["macs"]))):
        groups.setdefault(float(r["alpha"]), []).append(r)
    return groups


def plot_latency(rows: Sequence[dict], path: Path) -> Path:
    """Interpreter p50 latency vs multiply-adds, one line per alpha (solid int8, dashed float32), 1 thread and all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = next((r["threads"] for r in _ok(rows)), "N")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, suffix, title in ((axes[0], "1t", "1 thread"), (axes[1], "mt", f"{threads} threads")):
        for index, (alpha, group) in enumerate(_by_alpha(rows).items()):
            color = f"C{index}"
            macs = [float(r["macs"]) / 1e6 for r in group]
            ax.plot(
                macs, [float(r[f"int8_p50_ms_{suffix}"]) for r in group], "o-", color=color, label=f"α={alpha:g} int8"
            )
            ax.plot(
                macs,
                [float(r[f"float32_p50_ms_{suffix}"]) for r in group],
                "s--",
                color=color,
                alpha=0.6,
                label=f"α={alpha:g} float32",
            )
            for r, x in zip(group, macs, strict=True):
                ax.annotate(
                    str(r["input_size"]),
                    (x, float(r[f"int8_p50_ms_{suffix}"])),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, -9),
                )
        ax.set(title=f"interpreter latency p50, {title}", xlabel="multiply-adds (M, log)", ylabel="ms / invoke (log)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fps(rows: Sequence[dict], path: Path) -> Path:
    """End-to-end FPS (int8, all cores) vs multiply-adds, one line per alpha, points labelled with the input size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (alpha, group) in enumerate(_by_alpha(rows).items()):
        macs = [float(r["macs"]) / 1e6 for r in group]
        fps = [float(r["e2e_fps"]) for r in group]
        ax.plot(macs, fps, "o-", color=f"C{index}", label=f"α={alpha:g}")
        for r, x, y in zip(group, macs, fps, strict=True):
            ax.annotate(str(r["input_size"]), (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set(
        title="end-to-end FPS through the edge loop (int8, synthetic camera)",
        xlabel="multiply-adds (M, log)",
        ylabel="frames / s",
    )
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (lower latency, higher accuracy), sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_accuracy(rows: Sequence[dict], path: Path) -> Path | None:
    """int8 mAP@0.5 vs int8 latency (all cores) for trained cells with the Pareto front; None when none trained."""
    trained = [r for r in _ok(rows) if r["status"] == STATUS_TRAINED and r["map50_int8"] not in ("", None)]
    if not trained:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(float(r["int8_p50_ms_mt"]), 100 * float(r["map50_int8"])) for r in trained]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    alphas = sorted({float(r["alpha"]) for r in trained})
    for r, (x, y) in zip(trained, points, strict=True):
        ax.scatter([x], [y], color=f"C{alphas.index(float(r['alpha']))}")
        ax.annotate(r["cell"], (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    front = pareto_front(points)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", alpha=0.6, label="Pareto front")
    for index, alpha in enumerate(alphas):
        ax.scatter([], [], color=f"C{index}", label=f"α={alpha:g}")
    ax.set(title="accuracy vs latency (int8)", xlabel="interpreter latency p50, all cores (ms)", ylabel="mAP@0.5 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(rows: Sequence[dict], out: Path, settings: SweepSettings, host: str) -> list[Path]:
    """CSV, Markdown table, JSON settings and the plots under ``out``; returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = [write_csv(rows, out / "sweep.csv")]
    header = (
        f"Sweep on `{host}` ({platform.machine()}, {settings.all_threads()} threads for the all-core columns), "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}. Latency: p50 (p95) ms per `invoke` over "
        f"at least {settings.runs} runs and {settings.min_seconds:g} s after {settings.warmup} warm-up; e2e FPS over "
        f"at least {settings.e2e_frames} frames and {settings.e2e_seconds:g} s. "
        "`latency-only` cells use untrained weights (no checkpoint under the runs dir).\n\n"
    )
    md = out / "sweep.md"
    md.write_text(header + markdown_table(rows) + "\n")
    written.append(md)
    if _ok(rows):
        written.append(plot_latency(rows, out / "latency_vs_macs.png"))
        written.append(plot_fps(rows, out / "fps_vs_macs.png"))
        accuracy = plot_accuracy(rows, out / "accuracy_vs_latency.png")
        if accuracy is not None:
            written.append(accuracy)
    return written


DOCS_BEGIN, DOCS_END = "<!-- sweep-table:begin -->", "<!-- sweep-table:end -->"


def update_docs(doc: Path, out: Path, images: Sequence[Path]) -> None:
    """Replace the table between the ``DOCS_BEGIN``/``DOCS_END`` markers of ``doc`` with ``out/sweep.md``
    and copy ``images`` to ``doc``'s ``benchmarks/`` folder."""
    text = doc.read_text()
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise ValueError(f"{doc}: markers {DOCS_BEGIN} and {DOCS_END} not found")
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    doc.write_text(f"{head}{DOCS_BEGIN}\n{(out / 'sweep.md').read_text()}{DOCS_END}{tail}")
    folder = doc.parent / "benchmarks"
    folder.mkdir(exist_ok=True)
    for image in images:
        shutil.copyfile(image, folder / image.name)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench_sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", type=_floats, default=list(ALPHAS), help="width multipliers, e.g. 0.25,0.5")
    parser.add_argument("--sizes", type=_ints, default=list(SIZES), help="input sizes, e.g. 128,160")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs/sweep"),
        help="trained checkpoints as RUNS_DIR/a0.50_s160/best.keras (default runs/sweep)",
    )
    parser.add_argument("--latency-only", action="store_true", help="ignore checkpoints; untrained weights only")
    parser.add_argument("--runs", type=int, default=SweepSettings.runs, help="timed invokes per latency figure")
    parser.add_argument("--warmup", type=int, default=SweepSettings.warmup, help="untimed invokes first")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=SweepSettings.min_seconds,
        help="least seconds of timed invokes per latency figure",
    )
    parser.add_argument("--e2e-frames", type=int, default=SweepSettings.e2e_frames, help="least frames for e2e FPS")
    parser.add_argument(
        "--e2e-seconds", type=float, default=SweepSettings.e2e_seconds, help="least seconds the edge loop is timed"
    )
    parser.add_argument("--threads", type=int, default=0, help="threads for the all-core columns (0: all cores)")
    parser.add_argument("--calibration-images", type=int, default=SweepSettings.calibration_images)
    parser.add_argument(
        "--eval-images", type=int, default=SweepSettings.eval_images, help="validation images for mAP in trained cells"
    )
    parser.add_argument("--cache-dir", type=Path, default=SweepSettings.cache_dir, help="converted-model cache")
    parser.add_argument("--host", default="local", help="results folder name under bench/results (default local)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/<host>)")
    parser.add_argument(
        "--from-csv",
        type=Path,
        default=None,
        metavar="SWEEP.csv",
        help="measure nothing: rewrite the table and plots (and --update-docs) from an earlier sweep.csv",
    )
    parser.add_argument(
        "--print-cells",
        action="store_true",
        help="print 'ALPHA SIZE CELL' per grid cell and exit (used by make bench-train)",
    )
    parser.add_argument(
        "--update-docs",
        type=Path,
        default=None,
        metavar="DOC.md",
        help="also put the table between the sweep-table markers of DOC.md and copy the plots",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("runs", "e2e_frames", "calibration_images", "eval_images"):
        if getattr(args, name) < 1:
            print(f"bench_sweep: error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if not args.alphas or not args.sizes:
        print("bench_sweep: error: --alphas and --sizes need at least one value each", file=sys.stderr)
        return 2
    if args.print_cells:
        for alpha in args.alphas:
            for size in args.sizes:
                print(f"{alpha:g} {size} {cell_name(alpha, size)}")
        return 0
    settings = SweepSettings(
        runs=args.runs,
        min_seconds=args.min_seconds,
        e2e_seconds=args.e2e_seconds,
        warmup=args.warmup,
        e2e_frames=args.e2e_frames,
        calibration_images=args.calibration_images,
        threads=args.threads,
        eval_images=args.eval_images,
        runs_dir=None if args.latency_only else args.runs_dir,
        cache_dir=args.cache_dir,
    )
    out = args.out or Path("bench/results") / args.host
    started = time.perf_counter()
    rows = read_csv(args.from_csv) if args.from_csv is not None else run_sweep(args.alphas, args.sizes, settings)
    written = write_outputs(rows, out, settings, args.host)
    print(markdown_table(rows))
    failed = [r["cell"] for r in rows if r["status"] == STATUS_ERROR]
    print(
        f"\nsweep: {len(rows)} cells in {time.perf_counter() - started:.0f} s, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
    )
    for path in written:
        print(f"wrote {path}")
    if args.update_docs is not None:
        update_docs(args.update_docs, out, [p for p in written if p.suffix == ".png"])
        print(f"updated {args.update_docs}")
    return 1 if len(failed) == len(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
