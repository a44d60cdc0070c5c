"""What other tools need next to a converted model: conversion targets, their presets and the rpicam-apps stage JSON.

Targets (``TARGETS``):

* ``generic`` — whatever ``--quant`` / ``--postprocess`` / ``--max-detections`` say.
* ``rpicam-apps`` — the contract of rpicam-apps' ``object_detect_tf`` stage
  (``post_processing_stages/object_detect_tf_stage.cpp``): a 300x300 RGB uint8 input (``TfStage`` checks the
  input tensor's byte size against 300 * 300 * 3 and copies the lores pixels in unchanged), output 0
  ``(1, 10, 4)`` boxes (it refuses any other shape), outputs 1 and 2 classes and scores read for all 10 slots,
  and a labels file whose first line it discards. So: int8, ``TFLite_Detection_PostProcess`` with 10
  detections, labels in the ``rpicam`` format, and the stage's JSON (``assets/object_detect_tf.json``'s
  layout) next to the model.

No file I/O here: ``convert.cli`` writes the files.
"""

from __future__ import annotations

import dataclasses
import json
import os

from train.config import ModelConfig

TARGETS = ("generic", "rpicam-apps")
RPICAM_INPUT_SIZE = (300, 300)
RPICAM_MAX_DETECTIONS = 10


@dataclasses.dataclass(frozen=True)
class Sidecars:
    """Files written next to a model ``<stem>.tflite``."""

    labels: str
    """``<stem>.labels.txt``, ``index name`` lines (every model)."""
    rpicam_labels: str
    """``<stem>.rpicam-labels.txt``, ``???`` then one name per line (target rpicam-apps)."""
    rpicam_json: str
    """``<stem>.object_detect_tf.json``, the stage configuration (target rpicam-apps)."""


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return target


def sidecar_paths(model_path: str | os.PathLike) -> Sidecars:
    """The paths of the files that go next to ``model_path`` (``.../name.tflite``)."""
    base = os.fspath(model_path)
    stem = base[: -len(".tflite")] if base.endswith(".tflite") else base
    return Sidecars(f"{stem}.labels.txt", f"{stem}.rpicam-labels.txt", f"{stem}.object_detect_tf.json")


def rpicam_stage_json(
    model_file: str,
    labels_file: str,
    confidence_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    number_of_threads: int = 2,
    refresh_rate: int = 10,
) -> str:
    """The ``--post-process-file`` JSON for rpicam-apps' ``object_detect_tf`` stage (+ ``object_detect_draw_cv``).

    Keys and defaults are those of rpicam-apps' ``assets/object_detect_tf.json``; ``model_file`` and
    ``labels_file`` are written as given (absolute paths on the Pi).
    """
    stage = {
        "object_detect_tf": {
            "number_of_threads": number_of_threads,
            "refresh_rate": refresh_rate,
            "confidence_threshold": confidence_threshold,
            "overlap_threshold": overlap_threshold,
            "model_file": model_file,
            "labels_file": labels_file,
            "verbose": 1,
        },
        "object_detect_draw_cv": {"line_thickness": 2},
    }
    return json.dumps(stage, indent=4) + "\n"


def resize_detector(model, config: ModelConfig, input_size: tuple[int, int]):
    """``(model, config)`` rebuilt for ``input_size`` with the same weights; unchanged when the size already matches.

    The detector is fully convolutional, so ``train.model.build_ssd`` at another size has the same weights;
    anchors follow from the new config. Raises ``ValueError`` when ``model`` is not a ``build_ssd`` detector.
    """
    if tuple(config.input_size) == tuple(input_size):
        return model, config
    from train.model import build_ssd

    resized_config = dataclasses.replace(config, input_size=tuple(input_size))
    resized = build_ssd(resized_config)
    try:
        resized.set_weights(model.get_weights())
    except ValueError as exc:
        raise ValueError(
            f"cannot rebuild the detector at {input_size[0]}x{input_size[1]} (its weights do not fit "
            f"train.model.build_ssd: {exc}); train it at that size (python -m train --size {input_size[0]})"
        ) from None
    return resized, resized_config
