"""Keras detector -> Sony IMX500 (Raspberry Pi AI Camera) network package, via Sony's MCT and ``imxconv-tf``.

Two Python environments take part (docs/IMX500.md):

* ``.venv`` (TF 2.21 / Keras 3) loads ``best.keras`` and exports its weights as plain arrays keyed
  ``"<layer name>/<index>"`` (``export_weights``); ``.keras`` files do not load in Keras 2.15.
* ``.venv-imx500`` (TF 2.15 / Keras 2.15, ``requirements/imx500.txt``) rebuilds the same network with
  ``train.model.build_ssd``, copies the arrays in by layer name, drops the ``Rescaling`` layer the converter
  rejects (the model then takes RGB scaled to [-1, 1], ``to_model_input``), quantizes it with MCT and the
  IMX500 target platform capabilities calibrated on training images, appends edge-mdt-cl's
  ``SSDPostProcess`` and runs ``imxconv-tf``, which writes ``packerOut.zip`` and a memory report.

The network on the sensor outputs, in this order (``IMX500_OUTPUTS``): ``boxes (1, K, 4)`` normalized
``ymin, xmin, ymax, xmax``, ``scores (1, K)``, ``classes (1, K)`` 0-based label indices (background removed)
and ``count (1,)``; picamera2's ``IMX500.get_outputs(metadata)`` returns them in that order.

Only the NumPy/JSON helpers (``export_weights``, ``network_intrinsics``, ``parse_memory_report``) run in
``.venv``; everything that imports TensorFlow checks first that it runs in ``.venv-imx500``
(``check_toolchain``) and says so in one line otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from edge.boxes import center_to_corners
from train.config import ModelConfig

log = logging.getLogger(__name__)

TPC_VERSION = "4.0"
"""Version of the IMX500 target platform capabilities (edge-mdt-tpc) used for quantization."""
TOOLCHAIN_TF = "2.15"
"""TensorFlow minor version Sony's toolchain pins (uni-tensorflow needs < 2.16; MCT's Keras support needs <= 2.15)."""
IMX500_OUTPUTS = ("boxes", "scores", "classes", "count")
"""Order of the network's outputs on the sensor (what ``IMX500.get_outputs`` returns)."""
INPUT_NORMALIZATION = {"mean": [127.5, 127.5, 127.5], "scale": 1.0 / 127.5, "range": [-1.0, 1.0]}
"""The network input is RGB ``pixel / 127.5 - 1``; the converter records int8 ``pixel - 128`` (picamera2's default)."""
WEIGHTS_KEY = re.compile(r"^(?P<layer>.+)/(?P<index>\d+)$")


class Imx500Error(RuntimeError):
    """A conversion for the IMX500 cannot go on; the message is one line saying why and what to do."""


class ModelDoesNotFit(Imx500Error):
    """The converter's memory report says the network is larger than the sensor's memory (``memory``)."""

    def __init__(self, memory: MemoryReport) -> None:
        self.memory = memory
        super().__init__(
            f"the network needs {memory.used_bytes / 1e6:.2f} MB but the IMX500 has {memory.available_bytes / 1e6:.2f} "
            f"MB ({memory.percent:.0f} %): use a smaller --alpha or input size"
        )


@dataclasses.dataclass(frozen=True)
class PostprocessOptions:
    """Attributes of the in-network ``SSDPostProcess`` (NMS on the sensor)."""

    max_detections: int = 100
    score_threshold: float = 0.3
    iou_threshold: float = 0.5


@dataclasses.dataclass(frozen=True)
class MemoryReport:
    """The converter's memory report: bytes the network needs on the sensor, bytes available, and whether it fits."""

    used_bytes: int
    available_bytes: int

    @property
    def percent(self) -> float:
        return 100.0 * self.used_bytes / self.available_bytes

    @property
    def fits(self) -> bool:
        return self.used_bytes <= self.available_bytes

    def to_dict(self) -> dict:
        return {
            "used_bytes": self.used_bytes,
            "available_bytes": self.available_bytes,
            "percent": round(self.percent, 1),
            "fits": self.fits,
        }


# ---------------------------------------------------------------- NumPy / JSON side (both environments)


def export_weights(model) -> dict[str, np.ndarray]:
    """Every weight of a Keras model as ``{"<layer name>/<index>": array}`` (any Keras version, plain NumPy)."""
    arrays: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for index, weight in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{index}"] = np.asarray(weight)
    if not arrays:
        raise ValueError(f"model {model.name!r} has no weights to export")
    return arrays


def weights_by_layer(arrays: Mapping[str, np.ndarray], origin: str = "weights") -> dict[str, list[np.ndarray]]:
    """``export_weights`` arrays -> ``{layer name: [arrays in order]}`` for ``train.weights.copy_weights_by_name``."""
    grouped: dict[str, dict[int, np.ndarray]] = {}
    for key, array in arrays.items():
        match = WEIGHTS_KEY.match(key)
        if not match:
            raise ValueError(f"{origin}: key {key!r} is not '<layer name>/<index>'")
        grouped.setdefault(match["layer"], {})[int(match["index"])] = np.asarray(array)
    result = {}
    for layer, by_index in grouped.items():
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(f"{origin}: layer {layer!r} has weight indices {sorted(by_index)}; expected 0..n-1")
        result[layer] = [by_index[i] for i in range(len(by_index))]
    return result


def to_model_input(images: np.ndarray) -> np.ndarray:
    """RGB pixels 0..255 ``(B, H, W, 3)`` (uint8 or float) -> float32 in [-1, 1], what the export model takes."""
    return np.asarray(images, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def anchors_as_corners(config: ModelConfig) -> np.ndarray:
    """The config's anchors ``(N, 4)`` as normalized ``ymin, xmin, ymax, xmax`` (what ``SSDPostProcess`` takes)."""
    return center_to_corners(config.generate_anchors()).astype(np.float32)


def scale_factors(config: ModelConfig) -> tuple[float, float, float, float]:
    """``SSDPostProcess`` scale factors ``(y, x, h, w)`` = 1 / variances (10, 10, 5, 5 by default)."""
    return tuple(1.0 / v for v in config.variances)  # type: ignore[return-value]


def network_intrinsics(
    labels: Sequence[str], config: ModelConfig, options: PostprocessOptions | None = None, inference_rate: float = 30.0
) -> dict:
    """The intrinsics JSON for picamera2's ``NetworkIntrinsics`` plus this project's own description of the network.

    picamera2 (``picamera2.devices.imx500.NetworkIntrinsics``) validates ``task``, ``inference_rate``,
    ``cpu.bbox_normalization`` / ``cpu.bbox_order`` / ``cpu.softmax`` / ``cpu.post_processing``,
    ``input_aspect_ratio`` and ``classes.labels``; extra top-level keys are allowed by its schema, so ``edge_ssd``
    carries what the edge runtime checks (input size, normalisation, output order, NMS settings).
    Boxes come out already normalized in ``yx`` order: picamera2's examples divide boxes by the input height when
    ``bbox_normalization`` is true (it means "pixels, normalize them"), so it is false here.
    ``input_aspect_ratio`` is left out: picamera2 reads a square one as "crop the sensor to a square", but the
    network was trained, and the edge runs it, on the whole field of view resized to the input size.
    """
    options = options or PostprocessOptions()
    height, width = config.input_size
    return {
        "task": "object detection",
        "inference_rate": float(inference_rate),
        "cpu": {"bbox_normalization": False, "bbox_order": "yx"},
        "classes": {"labels": [str(label) for label in labels]},
        "edge_ssd": {
            "input_size": [int(height), int(width)],
            "input_format": "RGB",
            "normalization": INPUT_NORMALIZATION,
            "outputs": list(IMX500_OUTPUTS),
            "box_format": "normalized ymin, xmin, ymax, xmax",
            "postprocess": "in-network SSDPostProcess (edge-mdt-cl)",
            "max_detections": options.max_detections,
            "score_threshold": options.score_threshold,
            "iou_threshold": options.iou_threshold,
            "alpha": config.alpha,
            "tpc_version": TPC_VERSION,
        },
    }


_SIZE = re.compile(r"^\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>B|KB|MB|K|M)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2}


def _report_size(value: object, field: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise Imx500Error(f"converter memory report: field {field!r} is {value!r}; expected a size like '656896B'")
    return int(round(float(match["value"]) * _SIZE_UNITS[(match["unit"] or "B").upper()]))


def parse_memory_report(text: str, source: str = "memory report") -> MemoryReport:
    """``imxconv-tf``'s ``<name>_MemoryReport.json`` -> ``MemoryReport``.

    Reads ``"Memory Report"`` -> ``"Memory Usage"`` (runtime + model + reserved memory) and ``"Total Memory
    Available On Chip"`` (sizes as ``"656896B"``, or in K/M with another ``--report-size-unit``). Raises
    ``Imx500Error`` naming ``source`` and the field when the report is not of that form.
    """
    import json

    try:
        report = json.loads(text)["Memory Report"]
    except (ValueError, KeyError, TypeError):
        raise Imx500Error(
            f"{source}: not a converter memory report (expected JSON with a 'Memory Report' object)"
        ) from None
    for field in ("Memory Usage", "Total Memory Available On Chip"):
        if field not in report:
            raise Imx500Error(f"{source}: field 'Memory Report.{field}' is missing")
    used = _report_size(report["Memory Usage"], "Memory Usage")
    available = _report_size(report["Total Memory Available On Chip"], "Total Memory Available On Chip")
    if available <= 0:
        raise Imx500Error(f"{source}: 'Total Memory Available On Chip' is {available}; expected > 0")
    return MemoryReport(used, available)


REPO_ROOT = Path(__file__).resolve().parents[1]


def toolchain_python() -> Path:
    """The ``.venv-imx500`` interpreter: ``$IMX500_PYTHON`` or ``<repo>/.venv-imx500/bin/python``."""
    import os

    return Path(os.environ.get("IMX500_PYTHON") or REPO_ROOT / ".venv-imx500" / "bin" / "python")


def convert_in_toolchain(model, run_dir: Path, out_dir: Path, options: Sequence[str] = ()) -> int:
    """From ``.venv``: export ``model``'s weights (``export_weights``) and run ``python -m convert.imx500`` in
    ``.venv-imx500`` on them; returns its exit status (0 ok, 1 gate / does not fit, 2 bad input).

    ``options`` are passed on (``--data``, ``--calibration-images``, ``--max-map-drop``, ...). Raises
    ``Imx500Error`` when ``.venv-imx500`` is missing.
    """
    python = toolchain_python()
    if not python.exists():
        raise Imx500Error(f"{python} not found: build Sony's toolchain with make setup-imx500 (or set IMX500_PYTHON)")
    import os

    with tempfile.TemporaryDirectory(prefix="imx500_weights_") as work:
        weights = Path(work) / "weights.npz"
        np.savez(weights, **export_weights(model))
        command = [str(python), "-m", "convert.imx500", str(run_dir), "--weights", str(weights), "--out", str(out_dir)]
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        log.info("IMX500 conversion in %s", python)
        return subprocess.run([*command, *options], env=env, check=False).returncode


# ---------------------------------------------------------------- .venv-imx500 side (TF 2.15 / Keras 2.15)


def check_toolchain(need_java: bool = True) -> None:
    """Raise ``Imx500Error`` unless this Python has Sony's toolchain (TF 2.15, Keras 2, MCT) and Java is on PATH."""
    try:
        import tensorflow as tf
    except ImportError:
        raise Imx500Error(
            "IMX500 conversion needs TensorFlow 2.15: run it from .venv-imx500 (make setup-imx500)"
        ) from None
    if not tf.__version__.startswith(TOOLCHAIN_TF + "."):
        raise Imx500Error(
            f"IMX500 conversion runs from .venv-imx500 (TensorFlow {TOOLCHAIN_TF}, Keras 2), this Python has "
            f"TensorFlow {tf.__version__}: use `python -m convert RUN --target imx500` or make convert-imx500"
        )
    try:
        import model_compression_toolkit  # noqa: F401
    except ImportError:
        raise Imx500Error(
            "Sony's model_compression_toolkit is missing: rebuild .venv-imx500 with make setup-imx500"
        ) from None
    if need_java and shutil.which("java") is None:
        raise Imx500Error(
            "Java 17 is missing (imxconv-tf runs on it): sudo apt-get install openjdk-17-jre-headless, "
            "or make setup-imx500"
        )


def _without_rescaling(model):
    """``model`` rebuilt without its ``Rescaling`` layer(s), weights copied by layer name.

    Edits the functional config (Keras 2 layout): each ``Rescaling`` layer is removed and its consumers are
    wired to its input, so the new model takes what the ``Rescaling`` layer produced ([-1, 1] pixels).
    """
    import keras

    config = model.get_config()
    rescaling = {
        layer["config"]["name"]: layer["inbound_nodes"][0][0]
        for layer in config["layers"]
        if layer["class_name"] == "Rescaling"
    }
    if not rescaling:
        return model

    def rewire(node):
        if isinstance(node, list) and node and isinstance(node[0], str) and node[0] in rescaling:
            source = rescaling[node[0]]
            return [source[0], source[1], source[2], *node[3:]]
        if isinstance(node, list):
            return [rewire(item) for item in node]
        return node

    config["layers"] = [
        {**layer, "inbound_nodes": rewire(layer["inbound_nodes"])}
        for layer in config["layers"]
        if layer["config"]["name"] not in rescaling
    ]
    stripped = keras.Model.from_config(config)
    for layer in stripped.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return stripped


def build_export_model(config: ModelConfig, weights: Mapping[str, np.ndarray], origin: str = "weights"):
    """``train.model.build_ssd(config)`` with ``weights`` (``export_weights`` arrays) and no ``Rescaling``.

    Returns a Keras 2 model: input float32 ``(B, H, W, 3)`` RGB in [-1, 1] (``to_model_input``), outputs
    ``[box_deltas (B, N, 4), class_scores (B, N, C+1)]``. Raises ``ValueError`` when a layer of the model gets
    no weights (the arrays come from another architecture or alpha).
    """
    check_toolchain(need_java=False)
    from train.model import build_ssd
    from train.weights import copy_weights_by_name

    model = build_ssd(config)
    grouped = weights_by_layer(weights, origin)
    copy_weights_by_name(model, grouped, origin)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in grouped]
    if missing:
        raise ValueError(f"{origin}: no weights for layers {missing[:5]} (is it a run of alpha {config.alpha}?)")
    return _without_rescaling(model)


def quantize(export_model, calibration_images: Iterable[np.ndarray], batch_size: int = 1):
    """MCT post-training quantization of ``export_model`` for the IMX500 (TPC ``TPC_VERSION``).

    ``calibration_images``: uint8 RGB ``(H, W, 3)`` at the model input size (``convert.calibration``), scaled
    with ``to_model_input`` exactly like inference. Returns MCT's quantized Keras model (same inputs and
    outputs as ``export_model``; it runs on the CPU, for accuracy checks).
    """
    check_toolchain(need_java=False)
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    images = [np.asarray(image) for image in calibration_images]
    if not images:
        raise ValueError("calibration set is empty: IMX500 quantization needs uint8 RGB training images")
    height, width = export_model.input_shape[1:3]
    for index, image in enumerate(images):
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"calibration image {index}: expected uint8 RGB ({height}, {width}, 3), got {image.dtype} {image.shape}"
            )
    batches = [to_model_input(np.stack(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]

    def representative_dataset():
        for batch in batches:
            yield [batch]

    tpc = get_target_platform_capabilities(tpc_version=TPC_VERSION, device_type="imx500")
    quantized, _ = mct.ptq.keras_post_training_quantization(
        export_model, representative_dataset, target_platform_capabilities=tpc
    )
    return quantized


def with_postprocess(quantized_model, config: ModelConfig, options: PostprocessOptions | None = None):
    """``quantized_model`` + edge-mdt-cl ``SSDPostProcess``: outputs ``IMX500_OUTPUTS`` (see the module docstring).

    Anchors go in as corners, ``scale_factors`` are 1 / variances, the scores are the model's softmax output
    (``ScoreConverter.LINEAR``: no second softmax), ``remove_background`` drops class 0, so ``classes`` are
    0-based label indices, and boxes are clipped to [0, 1].
    """
    import keras
    from edgemdt_cl.keras import ScoreConverter, SSDPostProcess

    options = options or PostprocessOptions()
    box_deltas, class_scores = quantized_model.outputs[:2]
    result = SSDPostProcess(
        anchors=anchors_as_corners(config),
        scale_factors=scale_factors(config),
        clip_size=(1.0, 1.0),
        score_converter=ScoreConverter.LINEAR,
        score_threshold=options.score_threshold,
        iou_threshold=options.iou_threshold,
        max_detections=options.max_detections,
        remove_background=True,
    )([box_deltas, class_scores])
    return keras.Model(quantized_model.inputs, list(result), name=f"{quantized_model.name}_imx500")


def run_converter(
    keras_path: Path, out_dir: Path, memory_only: bool = False, timeout_s: float = 1800.0
) -> tuple[Path | None, MemoryReport, str]:
    """Run ``imxconv-tf`` on an MCT-exported ``.keras`` file; returns ``(packerOut.zip, memory report, log)``.

    ``memory_only``: the converter's ``--memory-report`` (no ``packerOut.zip``; the path returned is None).
    Raises ``ModelDoesNotFit`` (one line, with the figures) when the network is larger than the sensor's
    memory, ``Imx500Error`` when the converter fails otherwise (its last error line quoted).
    """
    check_toolchain()
    exe = Path(sys.executable).with_name("imxconv-tf")
    if not exe.exists():
        raise Imx500Error("imxconv-tf not found next to this Python: rebuild .venv-imx500 with make setup-imx500")
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [str(exe), "-i", str(keras_path), "-o", str(out_dir), "--overwrite-output", "--report-size-unit", "B"]
    if memory_only:
        command.append("--memory-report")
    log.info("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    output = done.stdout + done.stderr
    reports = sorted(out_dir.glob("*_MemoryReport.json"))
    memory = parse_memory_report(reports[0].read_text(), str(reports[0])) if reports else None
    if memory is not None and not memory.fits:
        raise ModelDoesNotFit(memory)
    packer = out_dir / "packerOut.zip"
    if done.returncode != 0 or memory is None or not (memory_only or packer.is_file()):
        errors = [line for line in output.splitlines() if "error" in line.lower()] or output.splitlines()[-1:]
        raise Imx500Error(f"imxconv-tf failed (exit {done.returncode}): {errors[-1].strip() if errors else '?'}")
    return (None if memory_only else packer), memory, output


def build_package(
    quantized_model,
    config: ModelConfig,
    work_dir: Path,
    options: PostprocessOptions | None = None,
    memory_only: bool = False,
) -> tuple[Path | None, MemoryReport, str]:
    """Append ``SSDPostProcess`` to MCT's quantized model, export it (MCTQ ``.keras``) and run ``imxconv-tf``.

    Writes only under ``work_dir``; returns ``(work_dir/converter/packerOut.zip, memory report, converter log)``
    (no package with ``memory_only``).
    """
    import model_compression_toolkit as mct

    network = with_postprocess(quantized_model, config, options)
    keras_path = work_dir / "network.keras"
    mct.exporter.keras_export_model(model=network, save_model_path=str(keras_path))
    return run_converter(keras_path, work_dir / "converter", memory_only)


def toolchain_versions() -> dict[str, str]:
    """Versions of the packages that shaped the network on the sensor (written into the conversion report)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("tensorflow", "keras", "model-compression-toolkit", "edge-mdt-tpc", "edge-mdt-cl", "imx500-converter"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


# ---------------------------------------------------------------- command line of the .venv-imx500 side


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m convert.imx500",
        description="(.venv-imx500) training run + exported weights -> IMX500 packerOut.zip, labels, intrinsics. "
        "Use `python -m convert RUN --target imx500 --out DIR` from .venv, which exports the weights and calls this.",
    )
    parser.add_argument("run", type=Path, help="training run directory (run.json)")
    parser.add_argument("--weights", type=Path, required=True, help=".npz written by export_weights (from .venv)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: run.json's)")
    parser.add_argument("--calibration-images", type=int, default=20, help="training images for MCT (default 20)")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--max-map-drop", type=float, default=1.0, help="mAP@0.5 points IMX500 may lose vs float")
    parser.add_argument("--eval-images", type=int, default=None, help="score only the first N validation images")
    parser.add_argument("--skip-accuracy", action="store_true", help="no float vs quantized evaluation, no gate")
    parser.add_argument("--score-threshold", type=float, default=PostprocessOptions.score_threshold)
    parser.add_argument("--iou-threshold", type=float, default=PostprocessOptions.iou_threshold)
    parser.add_argument("--max-detections", type=int, default=PostprocessOptions.max_detections)
    return parser


def _keras_predict(model):
    def predict(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        box_deltas, class_scores = model.predict_on_batch(to_model_input(batch))[:2]
        return np.asarray(box_deltas), np.asarray(class_scores)

    return predict


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 ok, 1 accuracy gate failed or the network does not fit, 2 bad input or toolchain."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from convert.accuracy import AccuracyGateError
    from convert.calibration import CalibrationError

    try:
        return _run(args)
    except (AccuracyGateError, ModelDoesNotFit) as exc:
        print(f"error: {exc}. Nothing written to {args.out}.", file=sys.stderr)
        return 1
    except (Imx500Error, FileNotFoundError, ValueError, CalibrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import json

    from convert import accuracy
    from convert.calibration import calibration_images
    from edge.atomic import atomic_write_bytes
    from train.rundir import RunDir

    check_toolchain()
    started = time.perf_counter()
    run_dir = RunDir(Path(args.run))
    info = run_dir.read_info()
    config, labels = info.config, info.labels
    data = run_dir.data_path(args.data)
    if not args.weights.is_file():
        raise FileNotFoundError(
            f"--weights {args.weights}: no such file (written by `python -m convert --target imx500`)"
        )
    with np.load(args.weights) as npz:
        weights = {key: npz[key] for key in npz.files}
    options = PostprocessOptions(args.max_detections, args.score_threshold, args.iou_threshold)
    print(f"IMX500: config {config.to_dict()}  labels {labels}  toolchain {toolchain_versions()}")

    export_model = build_export_model(config, weights, str(args.weights))
    calibration = calibration_images(data, config.input_size, args.calibration_images, split=args.train_split)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    quantized = quantize(export_model, calibration)
    timings["quantize_s"] = time.perf_counter() - start
    print(f"MCT PTQ (IMX500 TPC {TPC_VERSION}, {len(calibration)} images): {timings['quantize_s']:.1f} s")

    results = []
    if not args.skip_accuracy:
        from train.datasets import load_dataset

        records = load_dataset(data, args.val_split, labels=labels, skip_bad=True).records[: args.eval_images]
        if not records:
            raise ValueError(f"{data}: split '{args.val_split}' has no images to evaluate on")
        start = time.perf_counter()
        results.append(
            accuracy.evaluate_predict(accuracy.FLOAT_VARIANT, _keras_predict(export_model), records, config, labels)
        )
        results.append(accuracy.evaluate_predict("imx500", _keras_predict(quantized), records, config, labels))
        timings["evaluate_s"] = time.perf_counter() - start
        print(accuracy.format_table(results))
        drop = accuracy.check_gate(results, args.max_map_drop, variant="imx500")
        print(f"IMX500 mAP@0.5 drop vs float: {drop:.2f} points (limit {args.max_map_drop:g})")

    with tempfile.TemporaryDirectory(prefix="imx500_") as work:
        start = time.perf_counter()
        packer, memory, _ = build_package(quantized, config, Path(work), options)
        timings["imxconv_s"] = time.perf_counter() - start
        print(
            f"imxconv-tf: {timings['imxconv_s']:.1f} s; sensor memory {memory.used_bytes / 1e6:.2f} MB of "
            f"{memory.available_bytes / 1e6:.2f} MB ({memory.percent:.0f} %), fits: {memory.fits}"
        )
        package = packer.read_bytes()
    timings["total_s"] = time.perf_counter() - started

    intrinsics = network_intrinsics(labels, config, options)
    report = {
        "run": str(args.run),
        "data": str(data),
        "model": config.to_dict(),
        "labels": labels,
        "calibration_images": len(calibration),
        "memory": memory.to_dict(),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "accuracy": [r.to_dict() for r in results],
        "max_map_drop": args.max_map_drop,
        "toolchain": toolchain_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "packerOut.zip", package)
    atomic_write_bytes(args.out / "labels.txt", ("\n".join(labels) + "\n").encode())
    atomic_write_bytes(args.out / "network_intrinsics.json", (json.dumps(intrinsics, indent=2) + "\n").encode())
    atomic_write_bytes(args.out / "imx500_report.json", (json.dumps(report, indent=2) + "\n").encode())
    if results:
        atomic_write_bytes(args.out / "imx500.accuracy.md", (accuracy.format_table(results) + "\n").encode())
    print(
        f"wrote {args.out}/packerOut.zip ({len(package) / 1024:.0f} KiB), labels.txt, network_intrinsics.json, "
        f"imx500_report.json in {timings['total_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
