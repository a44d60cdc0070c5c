"""Training as a library: ``run(model_config, train_config, data, out) -> metrics``.

``python -m train`` (``train/cli.py``) only parses flags into the configs below and calls these functions::

    data = load_training_data(DataConfig("data/synthetic"))
    config = ModelConfig(alpha=0.5, input_size=(160, 160), num_classes=len(data.labels))
    metrics = run(config, TrainConfig(epochs=30), data, "runs/demo")

``run`` resumes from ``out/state`` unless ``restart``; it writes the run directory described in
``train.rundir`` (only the chief worker writes it under ``MultiWorkerMirroredStrategy``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

import keras

from train import evaluate
from train.augment import AugmentConfig
from train.config import ModelConfig
from train.datasets import FORMATS, Dataset, load_dataset
from train.model import build_ssd, set_backbone_trainable
from train.pipeline import make_dataset
from train.rundir import RunDir
from train.trainer import TrainConfig, Trainer, make_strategy
from train.weights import check_weights_spec, load_backbone_weights

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """Training cannot start as asked (empty split, unusable backbone weights); the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the dataset is and which splits train and validate."""

    path: str | Path
    format: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"DataConfig.format must be one of {FORMATS}, got {self.format!r}")


class TrainingData(NamedTuple):
    """The two loaded splits (``train.datasets.Dataset``) and where they came from."""

    source: DataConfig
    train: Dataset
    val: Dataset

    @property
    def labels(self) -> list[str]:
        return self.train.labels


def load_training_data(source: DataConfig) -> TrainingData:
    """Load and verify both splits (the validation split with the training split's labels).

    Raises what ``load_dataset`` raises (``AnnotationError``, ``OSError``, ``ValueError``) for unreadable data,
    and ``TrainingError`` when a split has no usable image.
    """
    train_set = load_dataset(source.path, source.train_split, fmt=source.format, skip_bad=source.skip_bad)
    val_set = load_dataset(
        source.path, source.val_split, fmt=source.format, labels=train_set.labels, skip_bad=source.skip_bad
    )
    train_set.verify_images()
    val_set.verify_images()
    if not train_set.records or not val_set.records:
        raise TrainingError(
            f"{source.path} has no usable images in split '{source.train_split}' or '{source.val_split}'"
        )
    return TrainingData(source, train_set, val_set)


def build_model(model_config: ModelConfig, train_config: TrainConfig) -> keras.Model:
    """The inference model with ``train_config``'s backbone weights and frozen blocks applied.

    ``TrainingError`` (naming the weights or the block index) when they cannot be applied.
    """
    try:
        check_weights_spec(model_config.alpha, train_config.backbone_weights)
        model = build_ssd(model_config)
        load_backbone_weights(model, model_config.alpha, train_config.backbone_weights)
        if train_config.freeze_backbone or train_config.fine_tune_from is not None:
            set_backbone_trainable(model, not train_config.freeze_backbone, fine_tune_from=train_config.fine_tune_from)
    except (OSError, RuntimeError, ValueError) as error:
        raise TrainingError(str(error)) from error
    return model


def run_info(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: TrainingData,
    augment: AugmentConfig,
    command: str | None,
) -> dict:
    """The ``run.json`` of a run (``train.rundir`` documents the fields)."""
    return {
        "model": model_config.to_dict(),
        "labels": data.labels,
        "data": str(Path(data.source.path).resolve()),
        "format": data.train.format,
        "splits": {"train": data.source.train_split, "val": data.source.val_split},
        "train": dataclasses.asdict(train_config),
        "augment": dataclasses.asdict(augment),
        "command": command,
    }


def run(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: TrainingData,
    out: str | Path | RunDir,
    *,
    augment: AugmentConfig | None = None,
    restart: bool = False,
    command: str | None = None,
) -> dict:
    """Train a detector and write the run directory ``out``; returns the final ``metrics.json`` dict.

    Args:
        model_config: the detector; ``num_classes`` must equal ``len(data.labels)``.
        train_config: optimisation, schedule, strategy and stopping rules.
        data: from ``load_training_data``.
        out: the run directory; an existing run there is resumed unless ``restart``.
        augment: training augmentation (default: the SSD paper's, ``AugmentConfig()``).
        restart: forget the training state in ``out`` and start from epoch 1.
        command: the command line recorded in ``run.json``.

    Raises:
        RunDirError: ``out`` holds a run of another model or other labels (and not ``restart``).
        TrainingError: ``num_classes`` does not match the labels, or the backbone weights are unusable.
    """
    out = out if isinstance(out, RunDir) else RunDir(out)
    augment = AugmentConfig() if augment is None else augment
    if model_config.num_classes != len(data.labels):
        raise TrainingError(
            f"ModelConfig.num_classes is {model_config.num_classes} but the data has {len(data.labels)} "
            f"labels {data.labels}"
        )
    info = run_info(model_config, train_config, data, augment, command)
    if not restart:
        out.check_same_model(info)
    strategy = make_strategy(train_config.strategy)
    if restart and strategy.extended.should_checkpoint:
        out.clear_progress()
    keras.utils.set_random_seed(train_config.seed)
    model = build_model(model_config, train_config)
    global_batch = train_config.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = max(1, len(data.train.records) // global_batch)
    # Full batches only: a smaller last batch would retrace the training step every epoch.
    train_data = (
        make_dataset(
            data.train.records,
            model_config,
            global_batch,
            training=True,
            augment=augment,
            shuffle_seed=train_config.seed,
        )
        .repeat()
        .rebatch(global_batch, drop_remainder=True)
    )

    def evaluate_fn(current: keras.Model) -> dict:
        return evaluate.evaluate_model(current, data.val.records, model_config, data.labels)

    trainer = Trainer(model, train_config, out, train_data, steps_per_epoch, evaluate_fn, strategy, info)
    if not restart and trainer.restore():
        log.info("resuming %s after epoch %d", out, int(trainer.epoch.numpy()))
    return trainer.fit()
