"""``python -m convert RUN_OR_CHECKPOINT --quant int8 [--out model.tflite]``: checkpoint -> self-describing .tflite.

After converting, the float Keras model and each TFLite variant (``--compare``) are scored on the
validation split through the edge's decoder and NMS; a ``--postprocess builtin`` model is scored as
written, with the op's own NMS (row ``<quant>-builtin``). The table is printed and written next to
``--out`` (``.accuracy.json`` / ``.accuracy.md``), the measured float/quantized accuracy is embedded in
the model's metadata, and the command exits 1 (writing no model) when the int8 model written loses more
than ``--max-map-drop`` points of mAP@0.5 against float.

Next to the model go ``<stem>.labels.txt`` (``0 circle`` lines, for picamera2's examples and pycoral) and,
with ``--target rpicam-apps``, ``<stem>.rpicam-labels.txt`` and ``<stem>.object_detect_tf.json``
(``convert.interop``).

Exit codes: 0 ok, 1 accuracy gate failed, 2 bad input (checkpoint, data, arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from convert.calibration import DEFAULT_CALIBRATION_IMAGES, CalibrationError
from convert.checkpoint import load_detector
from convert.converter import POSTPROCESS_MODES, QUANT_MODES, BuiltinPostprocess
from convert.interop import TARGETS as TFLITE_TARGETS
from train.rundir import resolve_run

TARGETS = (*TFLITE_TARGETS, "imx500")
"""``--target``: a .tflite (generic, rpicam-apps) or the Raspberry Pi AI Camera's package (imx500, docs/IMX500.md)."""
log = logging.getLogger("convert")


def _variants(text: str) -> list[str]:
    variants = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in variants if v not in QUANT_MODES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {bad}; expected a comma list of {', '.join(QUANT_MODES)}")
    return variants


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run directory (run.json + best.keras) or a .keras checkpoint")
    parser.add_argument("--quant", default="int8", choices=QUANT_MODES, help="quantization of the written model")
    parser.add_argument("--out", type=Path, default=None, help="output .tflite (default RUN/model_<quant>.tflite)")
    parser.add_argument(
        "--postprocess",
        default=None,
        choices=POSTPROCESS_MODES,
        help="numpy (default): raw outputs decoded by the edge; builtin: TFLite_Detection_PostProcess in the graph "
        "(for picamera2, pycoral, rpicam-apps; docs/INTEROP.md)",
    )
    parser.add_argument(
        "--target",
        default="generic",
        choices=TARGETS,
        help="rpicam-apps: int8 builtin 300x300 with 10 detections, rpicam labels and object_detect_tf JSON; "
        "imx500: packerOut.zip for the Raspberry Pi AI Camera, built in .venv-imx500 (--out is a folder)",
    )
    builtin = parser.add_argument_group("builtin post-processing (TFLite_Detection_PostProcess attributes)")
    builtin.add_argument("--max-detections", type=int, default=None, help="output slots (default 100; rpicam-apps 10)")
    builtin.add_argument("--nms-iou", type=float, default=0.5, help="NMS IoU threshold (default 0.5)")
    builtin.add_argument(
        "--nms-score-threshold",
        type=float,
        default=BuiltinPostprocess.score_threshold,
        help=f"candidates need a score above this (default {BuiltinPostprocess.score_threshold:g}, as the TF OD API "
        "export: the tools' own thresholds then decide)",
    )
    builtin.add_argument(
        "--regular-nms",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="class-aware NMS per class, like the edge's NumPy NMS (default); --no-regular-nms: the op's fast NMS "
        "across classes (the TF OD API default; lost 11 mAP@0.5 points on the demo model, docs/INTEROP.md)",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help=f"training images used to calibrate int8 (default {DEFAULT_CALIBRATION_IMAGES})",
    )
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: the one recorded in run.json)")
    parser.add_argument("--train-split", default=None, help="calibration split (default: run.json's, else train)")
    parser.add_argument("--val-split", default=None, help="evaluation split (default: run.json's, else val)")
    parser.add_argument(
        "--max-map-drop",
        type=float,
        default=1.0,
        help="fail when int8 loses more than this many mAP@0.5 points vs float (default 1.0)",
    )
    parser.add_argument(
        "--compare",
        type=_variants,
        default=None,
        help="TFLite variants to score, e.g. float32,float16,dynamic,int8 (default: --quant)",
    )
    parser.add_argument("--eval-images", type=int, default=None, help="score only the first N validation images")
    parser.add_argument("--skip-accuracy", action="store_true", help="convert only; no evaluation and no gate")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from convert.imx500 import Imx500Error

    try:
        return _run_imx500(args) if args.target == "imx500" else _run(args)
    except (FileNotFoundError, ValueError, CalibrationError, Imx500Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_imx500(args: argparse.Namespace) -> int:
    """``--target imx500``: load the checkpoint here (Keras 3), convert in .venv-imx500 (``convert.imx500``)."""
    from convert.imx500 import convert_in_toolchain

    if args.compare or args.postprocess not in (None, "numpy"):
        raise ValueError("--target imx500: --compare and --postprocess do not apply (NMS runs on the sensor)")
    run_dir, checkpoint = resolve_run(args.run)
    model = load_detector(checkpoint, run_dir.read_info().config)
    options = ["--calibration-images", str(args.calibration_images), "--max-map-drop", str(args.max_map_drop)]
    for flag, value in (
        ("--data", args.data),
        ("--train-split", args.train_split),
        ("--val-split", args.val_split),
        ("--eval-images", args.eval_images),
    ):
        if value is not None:
            options += [flag, str(value)]
    if args.skip_accuracy:
        options.append("--skip-accuracy")
    return convert_in_toolchain(model, run_dir.path, args.out or run_dir.path / "imx500", options)


def resolve_postprocess(args: argparse.Namespace) -> tuple[str, BuiltinPostprocess | None]:
    """``(postprocess, builtin options or None)`` from the flags and ``--target``; ``ValueError`` on a conflict."""
    from convert.interop import RPICAM_MAX_DETECTIONS

    builtin_flags = args.max_detections is not None or args.regular_nms is not None
    if args.target == "rpicam-apps":
        if args.quant != "int8":
            raise ValueError(
                f"--target rpicam-apps: the stage needs an int8 (uint8 input) model, not --quant {args.quant}"
            )
        if args.postprocess == "numpy":
            raise ValueError("--target rpicam-apps: the stage needs --postprocess builtin")
        if args.max_detections not in (None, RPICAM_MAX_DETECTIONS):
            raise ValueError(f"--target rpicam-apps: the stage needs exactly {RPICAM_MAX_DETECTIONS} detections")
        postprocess, max_detections = "builtin", RPICAM_MAX_DETECTIONS
    else:
        postprocess = args.postprocess or "numpy"
        max_detections = args.max_detections or BuiltinPostprocess.max_detections
    if postprocess == "numpy":
        if builtin_flags:
            raise ValueError("--max-detections/--[no-]regular-nms: only with --postprocess builtin")
        return postprocess, None
    options = BuiltinPostprocess(
        max_detections=max_detections,
        score_threshold=args.nms_score_threshold,
        iou_threshold=args.nms_iou,
        use_regular_nms=args.regular_nms is not False,
        detections_per_class=max_detections,
    )
    return postprocess, options


def _default_out(run_dir: Path, quant: str, postprocess: str, target: str) -> Path:
    if target == "rpicam-apps":
        return run_dir / "model_int8_rpicam.tflite"
    return run_dir / f"model_{quant}{'_builtin' if postprocess == 'builtin' else ''}.tflite"


def _write_model(out: Path, model_bytes: bytes, labels: list[str], target: str) -> None:
    """Write the model and its sidecars (``convert.interop``) atomically, sidecars first."""
    from convert.interop import rpicam_stage_json, sidecar_paths
    from edge.atomic import atomic_write_bytes
    from edge.labels import format_labels

    sidecars = sidecar_paths(out)
    atomic_write_bytes(Path(sidecars.labels), format_labels(labels, "index").encode())
    written = [sidecars.labels]
    if target == "rpicam-apps":
        atomic_write_bytes(Path(sidecars.rpicam_labels), format_labels(labels, "rpicam").encode())
        stage = rpicam_stage_json(str(out.resolve()), str(Path(sidecars.rpicam_labels).resolve()))
        atomic_write_bytes(Path(sidecars.rpicam_json), stage.encode())
        written += [sidecars.rpicam_labels, sidecars.rpicam_json]
    atomic_write_bytes(out, model_bytes)
    print(f"labels and tool files: {', '.join(written)}")


def _run(args: argparse.Namespace) -> int:
    from convert import accuracy
    from convert.calibration import calibration_images
    from convert.converter import convert
    from convert.interop import RPICAM_INPUT_SIZE, resize_detector
    from convert.metadata_writer import embed_metadata
    from edge.metadata import read_metadata

    postprocess, options = resolve_postprocess(args)
    run_dir, checkpoint = resolve_run(args.run)
    info = run_dir.read_info()
    config, labels = info.config, info.labels
    out = args.out or _default_out(run_dir.path, args.quant, postprocess, args.target)
    needs_data = args.quant == "int8" or not args.skip_accuracy
    data = run_dir.data_path(args.data) if needs_data else args.data
    print(f"model: {checkpoint}  config: {config.to_dict()}  labels: {labels}")
    model = load_detector(checkpoint, config)
    trained = (model, config)
    if args.target == "rpicam-apps" and tuple(config.input_size) != RPICAM_INPUT_SIZE:
        model, config = resize_detector(model, config, RPICAM_INPUT_SIZE)
        log.warning(
            "--target rpicam-apps: detector trained at %dx%d rebuilt at %dx%d; the accuracy gate compares the written "
            "file with the float model at its trained size (train at 300 to lose nothing: python -m train --size 300)",
            *trained[1].input_size,
            *RPICAM_INPUT_SIZE,
        )
    if options is not None:
        print(f"builtin post-processing: {options}")
        if args.quant != "int8":
            log.warning(
                "a %s builtin model takes pixels in [0, 255]; picamera2's examples and rpicam-apps feed float inputs "
                "in [-1, 1], so only int8 builtin models are for those tools (docs/INTEROP.md)",
                args.quant,
            )

    calibration = None
    if args.quant == "int8" or (args.compare and "int8" in args.compare):
        calibration = calibration_images(
            data, config.input_size, args.calibration_images, split=info.split("train", args.train_split)
        )
        print(f"calibration: {len(calibration)} images from {data}")

    model_bytes = convert(model, config, labels, args.quant, calibration, postprocess, builtin_options=options)
    if args.skip_accuracy:
        _write_model(out, model_bytes, labels, args.target)
        print(f"wrote {out} ({len(model_bytes) / 1024:.0f} KiB, {args.quant}, postprocess={postprocess})")
        return 0

    from train.datasets import load_dataset

    val_split = info.split("val", args.val_split)
    records = load_dataset(data, val_split, labels=labels, skip_bad=True).records
    if args.eval_images is not None:
        records = records[: args.eval_images]
    if not records:
        raise ValueError(f"{data}: split '{val_split}' has no images to evaluate on")
    print(f"accuracy check: {len(records)} images of {data} ({val_split})")

    size = checkpoint.stat().st_size
    results = [accuracy.evaluate_keras(trained[0], records, trained[1], labels, size_bytes=size)]  # gate reference
    if trained[1] is not config:
        height, width = config.input_size
        results.append(accuracy.evaluate_keras(model, records, config, labels, size, variant=f"keras-{height}x{width}"))
    written_row = args.quant if postprocess == "numpy" else f"{args.quant}-builtin"
    variants = list(dict.fromkeys(args.compare or ([args.quant] if postprocess == "numpy" else [])))
    if postprocess == "numpy" and args.quant not in variants:
        variants.append(args.quant)
    for variant in variants:
        if variant == args.quant and postprocess == "numpy":
            variant_bytes = model_bytes
        else:
            variant_bytes = convert(model, config, labels, variant, calibration if variant == "int8" else None)
        results.append(accuracy.evaluate_tflite(variant, variant_bytes, records, config, labels))
    if postprocess == "builtin":  # the file as written, with the op's NMS
        results.append(accuracy.evaluate_tflite(written_row, model_bytes, records, config, labels))

    print(accuracy.format_table(results))
    extra = {"model": str(checkpoint), "data": str(data), "split": val_split, "max_map_drop": args.max_map_drop}
    if options is not None:
        extra["builtin_postprocess"] = dataclasses.asdict(options)
    json_path, md_path = accuracy.write_report(results, out, extra)
    print(f"accuracy table: {json_path}, {md_path}")
    gate_row = written_row if args.quant == "int8" else "int8"
    try:
        drop = accuracy.check_gate(results, args.max_map_drop, variant=gate_row)
    except accuracy.AccuracyGateError as exc:
        print(f"error: accuracy gate failed: {exc}. No model written to {out}.", file=sys.stderr)
        return 1
    if drop is not None:
        print(f"{gate_row} mAP@0.5 drop vs float: {drop:.2f} points (limit {args.max_map_drop:g})")

    measured = [r for r in results if r.variant in (accuracy.FLOAT_VARIANT, written_row)]
    metadata = read_metadata(model_bytes).replace(accuracy=accuracy.accuracy_metadata(measured, str(data), val_split))
    _write_model(out, embed_metadata(model_bytes, metadata), labels, args.target)
    print(f"wrote {out} ({len(model_bytes) / 1024:.0f} KiB, {args.quant}, postprocess={postprocess})")
    return 0
