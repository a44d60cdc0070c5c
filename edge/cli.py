"""``python -m edge run|info``: the command line over ``edge.Detector``, ``edge.sources``, ``edge.outputs``.

Errors print one line (``edge: error: ...``) and exit non-zero; a report (``--report``) is written at the
end of a run, also after Ctrl-C or SIGTERM. A run stopped by a signal exits with 128 + its number (130 for
SIGINT, 143 for SIGTERM, as a shell reports a process killed by it); signals that arrive while the run shuts
down are ignored, so a second Ctrl-C cannot lose the report or change the exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.sources import PICAMERA2_FORMATS

DEFAULT_MODEL = "models/demo_int8.tflite"

logger = logging.getLogger("edge")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge", description="MobileNet-SSD edge runtime")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the detector on a camera, video, stream or folder")
    run.add_argument("--model", default=DEFAULT_MODEL, help=f"int8/float .tflite model (default {DEFAULT_MODEL})")
    _add_standard_ssd_options(run)
    run.add_argument(
        "--source",
        default="synthetic",
        help="synthetic (default), picamera2, a device index 0/1/..., a video file, an rtsp:// or http:// URL, "
        "or a folder of images",
    )
    run.add_argument("--frames", type=int, help="stop after N processed frames")
    run.add_argument(
        "--duration", type=float, help="stop after S seconds (an error if the source gave no frame by then)"
    )
    run.add_argument(
        "--source-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="with --frames and no --duration: an error if the source gives no frame in S seconds (default 10)",
    )
    run.add_argument("--display", action="store_true", help="show an OpenCV window (needs a GUI OpenCV)")
    run.add_argument("--mjpeg", metavar="HOST:PORT", help="serve /, /stream (MJPEG), /stats; host 127.0.0.1 if omitted")
    run.add_argument(
        "--mjpeg-auth",
        metavar="FILE",
        help="--mjpeg: HTTP Basic credentials, one line user:password in a mode-0600 file "
        "(else $EDGE_MJPEG_PASSWORD, user $EDGE_MJPEG_USER or 'edge'); needed for a non-loopback HOST",
    )
    run.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="--mjpeg: serve a non-loopback HOST without credentials (anyone on the network sees the camera)",
    )
    run.add_argument(
        "--mjpeg-max-clients", type=int, default=16, metavar="N", help="--mjpeg: concurrent /stream clients (16)"
    )
    run.add_argument(
        "--mjpeg-max-per-address",
        type=int,
        default=4,
        metavar="N",
        help="--mjpeg: concurrent /stream clients from one IP address (default 4)",
    )
    run.add_argument("--jsonl", metavar="FILE|-", help="one JSON line per frame (- for stdout)")
    run.add_argument("--save-video", metavar="FILE", help="write the annotated video (.mp4 or .avi)")
    run.add_argument("--report", metavar="FILE.json", help="write a JSON report at the end (also on Ctrl-C/SIGTERM)")
    run.add_argument("--threads", type=int, help="interpreter threads (default: runtime's choice)")
    run.add_argument("--score-threshold", type=float, default=0.5, help="minimum detection score (default 0.5)")
    run.add_argument("--iou-threshold", type=float, default=0.5, help="NMS IoU threshold (default 0.5)")
    run.add_argument("--loop", action="store_true", help="restart a video file / image folder at its end")
    run.add_argument("--resolution", default="640x480", help="camera / emulator WIDTHxHEIGHT (default 640x480)")
    run.add_argument("--fps", type=float, default=30.0, help="camera / emulator frame rate (default 30)")
    run.add_argument("--unpaced", action="store_true", help="synthetic source: frames as fast as they render")
    run.add_argument("--lores", metavar="WxH", help="picamera2: detector input from a lores stream of this size")
    run.add_argument(
        "--lores-format",
        choices=PICAMERA2_FORMATS,
        default="YUV420",
        help="picamera2 --lores pixel format: YUV420 (default; the only one before the Pi 5) or, on a Pi 5, an RGB one",
    )
    run.add_argument(
        "--imx500",
        metavar="NETWORK.rpk",
        help="Raspberry Pi AI Camera: the network runs on the sensor (replaces --model and --source)",
    )
    run.add_argument("--imx500-intrinsics", metavar="FILE", help="network_intrinsics.json (default: next to the .rpk)")
    run.add_argument("--seed", type=int, default=0, help="synthetic source seed (default 0)")
    run.add_argument("--quiet", action="store_true", help="no live status line")

    info = commands.add_parser("info", help="print what a model file says about itself")
    info.add_argument("--model", default=DEFAULT_MODEL, help=f".tflite model (default {DEFAULT_MODEL})")
    return parser


def _add_standard_ssd_options(parser: argparse.ArgumentParser) -> None:
    """Options for SSD models made elsewhere (no edge metadata): labels and float/int8 input normalization."""
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="labels for a model made elsewhere (labelmap.txt: one name per line, first line ??? skipped, "
        "or 'index name' lines); default: the model's own",
    )
    parser.add_argument(
        "--input-mean",
        type=float,
        metavar="M",
        help="model made elsewhere: input = (pixel - M) / S (default: its TFLite metadata, else uint8 raw, "
        "int8/float [-1, 1])",
    )
    parser.add_argument("--input-std", type=float, metavar="S", help="see --input-mean")


def _load_detector(args: argparse.Namespace) -> Any:
    model = Path(args.model)
    if not model.is_file():
        hint = (
            " (the committed demo model; build it with `make train convert` or pass --model)"
            if (args.model == DEFAULT_MODEL)
            else ""
        )
        raise CliError(f"--model {args.model}: file not found{hint}")
    from edge.detector import Detector

    try:
        return Detector(
            str(model),
            num_threads=args.threads,
            score_threshold=args.score_threshold,
            iou_threshold=args.iou_threshold,
            labels=args.labels,
            input_mean=args.input_mean,
            input_std=args.input_std,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"--model {args.model}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def mjpeg_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``MjpegOutput`` keyword arguments from the ``--mjpeg*`` flags and ``environ``; None without ``--mjpeg``.

    Credentials come from ``--mjpeg-auth FILE`` (read here, once), else from ``EDGE_MJPEG_PASSWORD``. A
    non-loopback host without credentials is refused unless ``--insecure-no-auth`` (``edge.auth``).
    """
    from edge import auth
    from edge.mjpeg import parse_host_port

    if not args.mjpeg:
        for flag, given in (("--mjpeg-auth", args.mjpeg_auth), ("--insecure-no-auth", args.insecure_no_auth)):
            if given:
                raise CliError(f"{flag}: only with --mjpeg HOST:PORT")
        return None
    for flag, value in (
        ("--mjpeg-max-clients", args.mjpeg_max_clients),
        ("--mjpeg-max-per-address", args.mjpeg_max_per_address),
    ):
        if value < 1:
            raise CliError(f"{flag}: expected >= 1, got {value}")
    try:
        host, port = parse_host_port(args.mjpeg)
        if args.mjpeg_auth:
            credentials = auth.read_credentials_file(args.mjpeg_auth)
        else:
            credentials = auth.credentials_from_env(environ)
        auth.check_exposure(host, credentials, insecure_no_auth=args.insecure_no_auth)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if credentials is None and not auth.is_loopback(host):
        logger.warning("--insecure-no-auth: the stream on %s is open to anyone who can reach it", host)
    return {
        "host": host,
        "port": port,
        "credentials": credentials,
        "max_clients": args.mjpeg_max_clients,
        "max_clients_per_address": args.mjpeg_max_per_address,
    }


def _outputs(args: argparse.Namespace, mjpeg: dict[str, Any] | None, stats_provider: Any, on_quit: Any) -> list[Any]:
    from edge import outputs

    result: list[Any] = []
    if args.display:
        result.append(outputs.DisplayOutput(on_quit=on_quit))
    if mjpeg is not None:
        result.append(outputs.MjpegOutput(**mjpeg, stats_provider=stats_provider))
    if args.jsonl:
        result.append(outputs.JsonlOutput(args.jsonl))
    if args.save_video:
        result.append(outputs.VideoFileOutput(args.save_video, fps=args.fps))
    return result


def command_run(args: argparse.Namespace) -> int:
    from edge import sources, system
    from edge.pipeline import Pipeline
    from edge.stats import PipelineStats, StatusPrinter, write_report

    if args.frames is not None and args.frames < 1:
        raise CliError(f"--frames: expected >= 1, got {args.frames}")
    if args.duration is not None and args.duration <= 0:
        raise CliError(f"--duration: expected > 0 seconds, got {args.duration}")
    if args.source_timeout <= 0:
        raise CliError(f"--source-timeout: expected > 0 seconds, got {args.source_timeout}")
    mjpeg = mjpeg_settings(args, os.environ)
    try:
        resolution = sources.parse_resolution(args.resolution)
        lores = sources.parse_resolution(args.lores) if args.lores else None
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    stop_event = threading.Event()
    options: dict[str, Any] = {}
    if lores is not None:
        if args.source != "picamera2":
            raise CliError("--lores: only for --source picamera2")
        options["lores"] = lores
        options["lores_format"] = args.lores_format
    try:
        if args.imx500:
            from edge.imx500 import open_imx500

            source, detector = open_imx500(
                args.imx500, resolution, args.fps, args.score_threshold, args.imx500_intrinsics
            )
        else:
            source = sources.open_source(
                args.source,
                resolution=resolution,
                fps=args.fps,
                loop=args.loop,
                paced=not args.unpaced,
                seed=args.seed,
                stop=stop_event,
                **options,
            )
    except sources.SourceError as exc:
        raise CliError(str(exc)) from exc
    if not args.imx500:
        detector = _load_detector(args)

    evaluator = None
    if args.source == "synthetic" and not args.imx500:
        from edge.metrics import DetectionEvaluator

        evaluator = DetectionEvaluator(num_classes=max(1, len(detector.labels)), iou_threshold=0.5)
    stats = PipelineStats()
    pipeline_box: list[Pipeline] = []

    # The file the model path resolved to at start: a deploy's current.tflite is a symlink that a new deploy or a
    # rollback swaps, so /stats says which model this process really runs.
    model_file = str(Path(args.imx500 or args.model).resolve())

    def stats_provider() -> dict[str, Any]:
        return {**pipeline_box[0].stats.summary(), "model": model_file} if pipeline_box else {}

    outputs = _outputs(args, mjpeg, stats_provider, on_quit=lambda: stop_event.set())
    pipeline = Pipeline(
        source,
        detector,
        outputs,
        stats=stats,
        max_frames=args.frames,
        duration_s=args.duration,
        evaluator=evaluator,
        status=None if args.quiet else StatusPrinter(stats),
        temperature=system.cpu_temperature_c,
        throttling=system.throttling,
        stop_event=stop_event,
        first_frame_timeout_s=args.source_timeout if args.frames is not None and args.duration is None else None,
    )
    pipeline_box.append(pipeline)

    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        pipeline.stop(f"signal {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    error: BaseException | None = None
    try:
        pipeline.run()
    except EdgeError as exc:
        error = exc
    finally:
        if args.report:
            extra = {"model": {"path": str(args.imx500 or args.model), "labels": list(detector.labels)}}
            if error is not None:
                extra["error"] = _first_line(error)
            path = write_report(args.report, pipeline.report(extra))
            logger.info("report written to %s", path)
        for sig, handler in previous.items():
            # After a stop by signal the process is exiting: later signals are ignored, also while the interpreter
            # shuts down (it resets Python handlers to the default, which would kill it, but keeps SIG_IGN).
            signal.signal(sig, signal.SIG_IGN if received else handler)
    if len(received) > 1:
        logger.info("ignored %d more signal(s) while shutting down", len(received) - 1)
    if error is not None:
        raise CliError(_first_line(error)) from error
    summary = pipeline.stats.summary()
    print(
        f"edge: {summary['frames']} frames in {summary['duration_s']:.1f} s "
        f"({summary['average_fps']:.1f} FPS, {summary['dropped_frames']} dropped) — {pipeline.finished_reason}",
        file=sys.stderr,
    )
    return exit_status(received)


def exit_status(signals: list[int]) -> int:
    """The exit status of a finished run: 0, or 128 + the first signal received (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signals[0]) if signals else 0


def command_info(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not model.is_file():
        raise CliError(f"--model {args.model}: file not found")
    from edge.metadata import METADATA_NAME, read_metadata, read_metadata_buffers

    try:
        if METADATA_NAME in read_metadata_buffers(str(model)):
            described = {"metadata": read_metadata(str(model)).to_dict()}
        else:
            described = {"standard_ssd": _describe_standard_ssd(model)}
    except (ValueError, RuntimeError, OSError) as exc:
        raise CliError(f"--model {args.model}: {_first_line(exc)}") from exc
    print(json.dumps({"model": str(model), "size_bytes": model.stat().st_size, **described}, indent=2))
    return 0


def _describe_standard_ssd(model: Path) -> dict[str, Any]:
    from edge.runtime import load_interpreter
    from edge.standard_ssd import describe

    interpreter = load_interpreter(str(model)).interpreter
    return describe(
        model.read_bytes(),
        interpreter.get_input_details(),
        interpreter.get_output_details(),
        interpreter._get_full_signature_list() if hasattr(interpreter, "_get_full_signature_list") else None,
        source=str(model),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "info":
            return command_info(args)
        raise CliError(f"unknown command {args.command!r}; valid: run, info")
    except CliError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, the traceback goes to the debug log
        logger.debug("unhandled error", exc_info=True)
        print(f"edge: error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1
