"""The training run directory: its layout, and the one reader and writer of every file in it.

Layout (docs/ARCHITECTURE.md)::

    runs/NAME/
      run.json      what was trained: model config, labels, data path, splits, train/augment settings, command
      best.keras    inference model with the best validation mAP@0.5
      last.keras    inference model after the latest epoch
      metrics.json  best epoch and its validation metrics, epochs run, training seconds
      history.csv   one row per epoch (losses, learning rate, mAP when evaluated, elapsed seconds)
      logs/         TensorBoard event files
      state/        tf.train.Checkpoint of the training state (resume)

``run.json`` fields read back: ``model`` (``ModelConfig.to_dict()``), ``labels`` (one name per class),
``data`` (the dataset folder as a path string; ``{"path": ...}`` from older runs is read too), ``splits``
(``{"train": ..., "val": ...}``, default ``train``/``val``) and ``command`` (the ``python -m train`` line).
Every file is written to a temporary name and renamed, so an interrupted run leaves the previous one intact.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from edge.atomic import atomic_write_bytes
from train.config import ModelConfig

RUN_JSON = "run.json"
BEST = "best.keras"
LAST = "last.keras"
METRICS = "metrics.json"
HISTORY = "history.csv"
LOGS = "logs"
STATE = "state"
CHECKPOINTS = ("best", "last")
"""Names ``RunDir.checkpoint`` accepts besides a path to a ``.keras`` file."""


class RunDirError(ValueError):
    """A run directory that is missing, or whose ``run.json`` lacks or misstates a field (the message names both)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """``run.json`` as read back: the validated fields, and ``raw`` for everything else."""

    config: ModelConfig
    labels: list[str]
    data: Path | None
    splits: dict[str, str]
    command: str | None
    raw: dict[str, Any]

    def split(self, name: str, override: str | None = None) -> str:
        """The split recorded for ``name`` (``train`` or ``val``) unless ``override`` is given."""
        return override or self.splits.get(name, name)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode())


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A training run directory at ``path`` (it need not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        return str(self.path)

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def metrics_json(self) -> Path:
        return self.path / METRICS

    @property
    def history_csv(self) -> Path:
        return self.path / HISTORY

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    @property
    def state(self) -> Path:
        return self.path / STATE

    def checkpoint(self, name: str = "best") -> Path:
        """``best`` / ``last`` (this run's models) or a path to a ``.keras`` file; ``FileNotFoundError`` if absent."""
        path = self.path / f"{name}.keras" if name in CHECKPOINTS else Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {name!r}: no model file at {path}")
        return path

    def has_run_json(self) -> bool:
        return self.run_json.is_file()

    def read_raw(self) -> dict[str, Any]:
        """``run.json`` as stored (no validation); ``RunDirError`` if it is missing or not JSON."""
        if not self.run_json.is_file():
            raise RunDirError(f"{self.path}: {self.run_json} not found (is this a training run directory?)")
        try:
            raw = json.loads(self.run_json.read_text())
        except json.JSONDecodeError as error:
            raise RunDirError(f"{self.run_json}: not valid JSON ({error})") from None
        if not isinstance(raw, dict):
            raise RunDirError(f"{self.run_json}: expected a JSON object, got {type(raw).__name__}")
        return raw

    def read_info(self) -> RunInfo:
        """Read and validate ``run.json``; every error names the file and the field."""
        raw = self.read_raw()
        path = self.run_json
        for field in ("model", "labels"):
            if field not in raw:
                raise RunDirError(f"{path}: missing field '{field}'")
        try:
            config = ModelConfig.from_dict(raw["model"])
        except (ValueError, TypeError) as error:
            raise RunDirError(f"{path}: field 'model': {error}") from None
        labels = raw["labels"]
        if not isinstance(labels, list) or len(labels) != config.num_classes:
            raise RunDirError(f"{path}: field 'labels' must be a list of {config.num_classes} names, got {labels!r}")
        data = raw.get("data")
        if isinstance(data, dict):  # older runs
            data = data.get("path")
        if data is not None and not isinstance(data, str):
            raise RunDirError(f"{path}: field 'data' must be a path string, got {data!r}")
        splits = raw.get("splits") or {}
        if not isinstance(splits, dict) or not all(isinstance(v, str) for v in splits.values()):
            raise RunDirError(f"{path}: field 'splits' must map 'train'/'val' to split names, got {splits!r}")
        command = raw.get("command")
        return RunInfo(
            config=config,
            labels=[str(label) for label in labels],
            data=Path(data) if data else None,
            splits=dict(splits),
            command=command if isinstance(command, str) else None,
            raw=raw,
        )

    def data_path(self, override: str | Path | None = None) -> Path:
        """``override`` or the dataset recorded in ``run.json``; ``RunDirError`` naming the field if neither."""
        if override:
            return Path(override)
        data = self.read_info().data
        if data is None:
            raise RunDirError(f"{self.run_json}: field 'data' is missing; pass --data with the dataset folder")
        return data

    def check_same_model(self, info: dict[str, Any]) -> None:
        """``RunDirError`` when ``run.json`` exists and records another ``model`` or other ``labels`` than ``info``."""
        if not self.run_json.is_file():
            return
        previous = self.read_raw()
        current = json.loads(json.dumps(info))  # compare as stored: tuples become lists
        if previous.get("model") != current["model"] or previous.get("labels") != current["labels"]:
            raise RunDirError(
                f"{self.path} holds a run with a different model or labels ({previous.get('model')}); "
                "use another --out or --restart"
            )

    def write_info(self, info: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_json, json.dumps(info, indent=2))

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json``, or ``{}`` before the first epoch ends."""
        return json.loads(self.metrics_json.read_text()) if self.metrics_json.is_file() else {}

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_text(self.metrics_json, json.dumps(metrics, indent=2))

    def read_history(self) -> list[dict[str, str]]:
        """``history.csv`` rows as strings, or ``[]``."""
        if not self.history_csv.is_file():
            return []
        with self.history_csv.open() as handle:
            return list(csv.DictReader(handle))

    def write_history(self, rows: list[dict]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.history_csv, text.getvalue())

    def save_model(self, model, path: Path) -> None:
        """``model.save`` (a Keras model, no optimizer) to a temporary ``.keras`` file, then rename over ``path``."""
        tmp = path.with_name(f".{path.stem}.tmp.keras")
        try:
            model.save(tmp, include_optimizer=False)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def clear_progress(self) -> None:
        """Forget the training state, history and metrics (``--restart``); models are overwritten as training goes."""
        if self.state.exists():
            shutil.rmtree(self.state)
        for path in (self.history_csv, self.metrics_json):
            path.unlink(missing_ok=True)


def resolve_run(path: str | Path) -> tuple[RunDir, Path]:
    """A run directory (its ``best.keras``) or a ``.keras`` checkpoint inside one -> ``(RunDir, checkpoint)``.

    ``FileNotFoundError`` / ``ValueError`` say what was expected.
    """
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if not run.best.is_file():
            raise FileNotFoundError(
                f"{path}: no {BEST}; expected a training run directory ({RUN_JSON} + {BEST} from "
                "`python -m train`) or a .keras checkpoint inside one"
            )
        return run, run.best
    if path.is_file():
        if path.suffix != ".keras":
            raise ValueError(f"{path}: expected a Keras checkpoint ending in .keras (or a run directory)")
        return RunDir(path.parent), path
    raise FileNotFoundError(f"{path}: no such run directory or .keras checkpoint")
