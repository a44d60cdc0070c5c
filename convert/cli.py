"""``python -m convert RUN_OR_CHECKPOINT --quant int8 [--out model.tflite]``: checkpoint -> self-describing .tflite.

After converting, the float Keras model and each TFLite variant (``--compare``) are scored on the
validation split through the edge's decoder and NMS; the table is printed and written next to
``--out`` (``.accuracy.json`` / ``.accuracy.md``), the measured float/quantized accuracy is embedded in
the model's metadata, and the command exits 1 (writing no model) when int8 loses more than
``--max-map-drop`` points of mAP@0.5 against float.

Exit codes: 0 ok, 1 accuracy gate failed, 2 bad input (checkpoint, data, arguments).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from convert.calibration import DEFAULT_CALIBRATION_IMAGES, CalibrationError
from convert.checkpoint import load_detector
from convert.converter import POSTPROCESS_MODES, QUANT_MODES
from train.rundir import resolve_run

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
        default="numpy",
        choices=POSTPROCESS_MODES,
        help="numpy: raw outputs decoded by the edge; builtin: TFLite_Detection_PostProcess in the graph",
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
    try:
        return _run(args)
    except (FileNotFoundError, ValueError, CalibrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from convert import accuracy
    from convert.calibration import calibration_images
    from convert.converter import convert
    from edge.atomic import atomic_write_bytes
    from edge.metadata import embed_metadata, read_metadata

    run_dir, checkpoint = resolve_run(args.run)
    info = run_dir.read_info()
    config, labels = info.config, info.labels
    out = args.out or run_dir.path / f"model_{args.quant}.tflite"
    needs_data = args.quant == "int8" or not args.skip_accuracy
    data = run_dir.data_path(args.data) if needs_data else args.data
    print(f"model: {checkpoint}  config: {config.to_dict()}  labels: {labels}")
    model = load_detector(checkpoint, config)

    calibration = None
    if args.quant == "int8" or (args.compare and "int8" in args.compare):
        calibration = calibration_images(
            data, config.input_size, args.calibration_images, split=info.split("train", args.train_split)
        )
        print(f"calibration: {len(calibration)} images from {data}")

    model_bytes = convert(model, config, labels, args.quant, calibration, args.postprocess)
    if args.skip_accuracy:
        atomic_write_bytes(out, model_bytes)
        print(f"wrote {out} ({len(model_bytes) / 1024:.0f} KiB, {args.quant}, postprocess={args.postprocess})")
        return 0

    from train.datasets import load_dataset

    val_split = info.split("val", args.val_split)
    records = load_dataset(data, val_split, labels=labels, skip_bad=True).records
    if args.eval_images is not None:
        records = records[: args.eval_images]
    if not records:
        raise ValueError(f"{data}: split '{val_split}' has no images to evaluate on")
    print(f"accuracy check: {len(records)} images of {data} ({val_split})")

    results = [accuracy.evaluate_keras(model, records, config, labels, size_bytes=checkpoint.stat().st_size)]
    variants = list(dict.fromkeys(args.compare or [args.quant]))
    if args.quant not in variants:
        variants.append(args.quant)
    for variant in variants:
        if variant == args.quant and args.postprocess == "numpy":
            variant_bytes = model_bytes
        else:
            variant_bytes = convert(model, config, labels, variant, calibration if variant == "int8" else None)
        results.append(accuracy.evaluate_tflite(variant, variant_bytes, records, config, labels))

    print(accuracy.format_table(results))
    extra = {"model": str(checkpoint), "data": str(data), "split": val_split, "max_map_drop": args.max_map_drop}
    json_path, md_path = accuracy.write_report(results, out, extra)
    print(f"accuracy table: {json_path}, {md_path}")
    try:
        drop = accuracy.check_gate(results, args.max_map_drop)
    except accuracy.AccuracyGateError as exc:
        print(f"error: accuracy gate failed: {exc}. No model written to {out}.", file=sys.stderr)
        return 1
    if drop is not None:
        print(f"int8 mAP@0.5 drop vs float: {drop:.2f} points (limit {args.max_map_drop:g})")

    measured = [r for r in results if r.variant in (accuracy.FLOAT_VARIANT, args.quant)]
    metadata = read_metadata(model_bytes).replace(accuracy=accuracy.accuracy_metadata(measured, str(data), val_split))
    atomic_write_bytes(out, embed_metadata(model_bytes, metadata))
    print(f"wrote {out} ({len(model_bytes) / 1024:.0f} KiB, {args.quant}, postprocess={args.postprocess})")
    return 0
