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
from convert.converter import POSTPROCESS_MODES, QUANT_MODES

log = logging.getLogger("convert")
TARGETS = ("tflite", "imx500")


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
    parser.add_argument(
        "--target",
        default="tflite",
        choices=TARGETS,
        help="tflite (default) or imx500: packerOut.zip for the Raspberry Pi AI Camera, built in .venv-imx500",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output .tflite (default RUN/model_<quant>.tflite); imx500: a folder"
    )
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


def resolve_checkpoint(path: Path) -> tuple[Path, Path]:
    """``RUN`` dir or ``.keras`` file -> ``(checkpoint, run_dir)``; ``FileNotFoundError`` says what was expected."""
    if path.is_dir():
        checkpoint = path / "best.keras"
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"{path}: no best.keras; expected a training run directory (run.json + best.keras from "
                "`python -m train`) or a .keras checkpoint inside one"
            )
        return checkpoint, path
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path}: expected a Keras checkpoint ending in .keras (or a run directory)")
        return path, path.parent
    raise FileNotFoundError(f"{path}: no such run directory or .keras checkpoint")


def load_detector(checkpoint: Path, config):
    """Load a ``.keras`` checkpoint and check it is this project's detector for ``config``."""
    import keras

    from convert.converter import check_detector

    try:
        model = keras.models.load_model(checkpoint, compile=False)
    except Exception as exc:  # any load failure means "not a usable checkpoint"
        raise ValueError(
            f"{checkpoint}: cannot be loaded as a Keras model ({type(exc).__name__}: {exc}); expected a best.keras "
            "written by `python -m train`"
        ) from None
    check_detector(model, config, source=str(checkpoint))
    return model


def _split(run_json: dict, name: str, override: str | None, default: str) -> str:
    if override:
        return override
    splits = run_json.get("splits")
    return splits.get(name, default) if isinstance(splits, dict) else default


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
    from train.evaluate import load_run

    if args.compare or args.postprocess != "numpy":
        raise ValueError("--target imx500: --compare and --postprocess do not apply (NMS runs on the sensor)")
    checkpoint, run_dir = resolve_checkpoint(args.run)
    _, config, _ = load_run(run_dir)
    model = load_detector(checkpoint, config)
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
    return convert_in_toolchain(model, run_dir, args.out or run_dir / "imx500", options)


def _run(args: argparse.Namespace) -> int:
    from convert import accuracy
    from convert.calibration import calibration_images
    from convert.converter import convert
    from edge.atomic import atomic_write_bytes
    from edge.metadata import embed_metadata, read_metadata
    from train.evaluate import load_run

    checkpoint, run_dir = resolve_checkpoint(args.run)
    run_json, config, labels = load_run(run_dir)
    out = args.out or run_dir / f"model_{args.quant}.tflite"
    data = args.data or (Path(str(run_json["data"])) if isinstance(run_json.get("data"), str) else None)
    needs_data = args.quant == "int8" or not args.skip_accuracy
    if needs_data and data is None:
        raise ValueError(f"{run_dir / 'run.json'}: field 'data' is missing; pass --data with the dataset folder")
    print(f"model: {checkpoint}  config: {config.to_dict()}  labels: {labels}")
    model = load_detector(checkpoint, config)

    calibration = None
    if args.quant == "int8" or (args.compare and "int8" in args.compare):
        calibration = calibration_images(
            data, config.input_size, args.calibration_images, split=_split(run_json, "train", args.train_split, "train")
        )
        print(f"calibration: {len(calibration)} images from {data}")

    model_bytes = convert(model, config, labels, args.quant, calibration, args.postprocess)
    if args.skip_accuracy:
        atomic_write_bytes(out, model_bytes)
        print(f"wrote {out} ({len(model_bytes) / 1024:.0f} KiB, {args.quant}, postprocess={args.postprocess})")
        return 0

    from train.datasets import load_dataset

    val_split = _split(run_json, "val", args.val_split, "val")
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


if __name__ == "__main__":
    sys.exit(main())
