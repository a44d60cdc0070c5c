"""The training loop: multibox loss, cosine LR with warm-up, best-by-mAP checkpoints, resume, early stopping.

A custom ``tf.function`` step (rather than ``Model.fit``) because the multibox loss needs box and class
outputs together (positives normalise both terms) and ``tf.distribute`` strategies run it unchanged.

Run-directory layout (docs/ARCHITECTURE.md): ``run.json``, ``best.keras``, ``last.keras``, ``metrics.json``,
``history.csv``, ``logs/`` (TensorBoard) and ``state/`` (``tf.train.Checkpoint`` of weights, optimizer, epoch
and training seconds, used for resuming). Every file is written to a temporary name and renamed, so an interrupted run always leaves
its last good checkpoint and report intact.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from edge.anchors import ANCHOR_CODE_VERSION
from edge.atomic import atomic_write_bytes
from train.config import OPTIMIZERS, STRATEGIES, ModelConfig
from train.fused_batch_norm import copy_weights, with_fused_batch_norm

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; printed with and stored in every run."""

    epochs: int = 30
    batch_size: int = 16
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    eval_every: int = 1
    patience: int = 8
    seed: int = 0
    backbone_weights: str = "none"
    freeze_backbone: bool = False
    fine_tune_from: int | None = None
    strategy: str = "default"
    max_train_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"TrainConfig: epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"TrainConfig.strategy must be one of {STRATEGIES}, got {self.strategy!r}")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (all local GPUs) or ``multiworker`` (``TF_CONFIG`` cluster)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown --strategy {name!r}; expected one of {STRATEGIES}")


def make_optimizer(name: str, learning_rate, weight_decay: float) -> keras.optimizers.Optimizer:
    """``sgd`` (Nesterov momentum 0.9; measured to fit SSD from scratch fastest here) or ``adamw``."""
    if name == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay, clipnorm=10.0
        )
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, clipnorm=10.0)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    atomic_write_bytes(path, text.encode())


def atomic_save_model(model: keras.Model, path: Path) -> None:
    """``model.save`` to a temporary ``.keras`` file, then rename over ``path``."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp, include_optimizer=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Trainer:
    """Trains ``model`` on ``train_data`` and keeps ``out_dir`` up to date after every epoch.

    ``train_data`` yields ``(images (B,H,W,3) float32 0..255, {"box_deltas": (B,N,4), "class_labels": (B,N)})``;
    ``evaluate_fn(model) -> dict`` must return at least ``map50`` (validation mAP@0.5).
    """

    def __init__(
        self,
        model: keras.Model,
        model_config: ModelConfig,
        train_config: TrainConfig,
        labels: list[str],
        out_dir: Path,
        train_data: tf.data.Dataset,
        steps_per_epoch: int,
        evaluate_fn: Callable[[keras.Model], dict],
        strategy: tf.distribute.Strategy,
        run_info: dict,
    ) -> None:
        from train.loss import MultiboxLoss

        self.model = model
        self.model_config = model_config
        self.config = train_config
        self.labels = labels
        self.out_dir = Path(out_dir)
        self.steps_per_epoch = steps_per_epoch
        self.evaluate_fn = evaluate_fn
        self.strategy = strategy
        self.run_info = run_info
        with strategy.scope():
            # Trains a twin with fused batch norm (1.9x faster steps on CPU) and copies its weights into
            # ``model`` before evaluating and saving, so saved models stay plain Keras.
            self._twin = with_fused_batch_norm(model)
            self.training_model = keras.Model(
                self._twin.input,
                [self._twin.get_layer("box_deltas").output, self._twin.get_layer("class_logits").output],
            )
            total_steps = max(1, train_config.epochs * steps_per_epoch)
            warmup = min(int(train_config.warmup_epochs * steps_per_epoch), total_steps - 1)
            schedule = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=train_config.learning_rate * 0.01 if warmup else train_config.learning_rate,
                decay_steps=total_steps - warmup,
                alpha=0.01,
                warmup_target=train_config.learning_rate if warmup else None,
                warmup_steps=warmup,
            )
            self.optimizer = make_optimizer(train_config.optimizer, schedule, train_config.weight_decay)
            self.optimizer.build(self.training_model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_map = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_map50")
            self.stale_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="stale_epochs")
            # Training seconds of the epochs already run: a resumed run keeps counting (elapsed_s, time budget).
            self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed_seconds")
        self.loss_fn = MultiboxLoss()
        self.train_data = strategy.experimental_distribute_dataset(train_data)
        self.checkpoint = tf.train.Checkpoint(
            model=self.training_model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            best_map=self.best_map,
            stale_epochs=self.stale_epochs,
            elapsed=self.elapsed,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.out_dir / "state"), max_to_keep=2)
        self.writer = tf.summary.create_file_writer(str(self.out_dir / "logs"))
        self._step = tf.function(self._distributed_step, reduce_retracing=True)

    def _replica_step(self, images: tf.Tensor, targets: dict) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            deltas, logits = self.training_model(images, training=True)
            total, cls_loss, loc_loss = self.loss_fn(targets["box_deltas"], targets["class_labels"], deltas, logits)
            scaled = total / self.strategy.num_replicas_in_sync
        grads = tape.gradient(scaled, self.training_model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.training_model.trainable_variables, strict=True))
        return total, cls_loss, loc_loss

    def _distributed_step(self, images: tf.Tensor, targets: dict) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        per_replica = self.strategy.run(self._replica_step, args=(images, targets))
        return tuple(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for value in per_replica)

    def restore(self) -> bool:
        """Resume from ``out_dir/state`` if present; returns whether anything was restored."""
        if self.manager.latest_checkpoint is None:
            return False
        self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        copy_weights(self._twin, self.model)
        log.info(
            "resumed from %s at epoch %d (best mAP@0.5 %.4f)",
            self.manager.latest_checkpoint,
            int(self.epoch.numpy()),
            float(self.best_map.numpy()),
        )
        return True

    def _history_rows(self) -> list[dict]:
        path = self.out_dir / "history.csv"
        if not path.exists():
            return []
        with path.open() as handle:
            return list(csv.DictReader(handle))

    def _write_history(self, rows: list[dict]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out_dir / "history.csv", text.getvalue())

    def fit(self) -> dict:
        """Train until ``epochs``, early stopping or the time budget; returns the final ``metrics.json`` dict."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out_dir / "run.json", json.dumps(self.run_info, indent=2))
        history = self._history_rows()
        start = time.monotonic() - float(self.elapsed.numpy())  # resumed: count the earlier epochs' time too
        metrics: dict = (
            json.loads((self.out_dir / "metrics.json").read_text()) if (self.out_dir / "metrics.json").exists() else {}
        )
        iterator = iter(self.train_data)
        while int(self.epoch.numpy()) < self.config.epochs:
            epoch = int(self.epoch.numpy()) + 1
            epoch_start = time.monotonic()
            sums = np.zeros(3)
            bar = tqdm(
                range(self.steps_per_epoch),
                desc=f"epoch {epoch}/{self.config.epochs}",
                unit="step",
                dynamic_ncols=True,
                leave=False,
            )
            for step in bar:
                images, targets = next(iterator)
                values = [float(v) for v in self._step(images, targets)]
                if not all(math.isfinite(v) for v in values):
                    raise FloatingPointError(
                        f"loss became {values} at epoch {epoch} step {step}; "
                        f"last good checkpoint kept in {self.out_dir}"
                    )
                sums += values
                bar.set_postfix(
                    loss=f"{sums[0] / (step + 1):.3f}",
                    cls=f"{sums[1] / (step + 1):.3f}",
                    loc=f"{sums[2] / (step + 1):.3f}",
                )
            bar.close()
            now = time.monotonic()
            copy_weights(self._twin, self.model)
            mean = sums / self.steps_per_epoch
            learning_rate = float(self.optimizer.learning_rate)
            row = {
                "epoch": epoch,
                "loss": round(mean[0], 5),
                "cls_loss": round(mean[1], 5),
                "loc_loss": round(mean[2], 5),
                "lr": f"{learning_rate:.6g}",
                "map50": "",
                "coco_map": "",
                "elapsed_s": round(now - start, 1),
            }
            # The budget is a ceiling: stop when one more epoch like this one would pass it.
            epoch_seconds = now - epoch_start
            out_of_time = (
                self.config.max_train_minutes is not None
                and now - start + epoch_seconds > 60 * self.config.max_train_minutes
            )
            last_epoch = epoch == self.config.epochs or out_of_time
            with self.writer.as_default(step=epoch):
                tf.summary.scalar("loss/total", mean[0])
                tf.summary.scalar("loss/cls", mean[1])
                tf.summary.scalar("loss/loc", mean[2])
                tf.summary.scalar("lr", learning_rate)
            improved = False
            if epoch % self.config.eval_every == 0 or last_epoch:
                result = self.evaluate_fn(self.model)
                row["map50"], row["coco_map"] = round(result["map50"], 4), round(result.get("coco_map", 0.0), 4)
                with self.writer.as_default(step=epoch):
                    tf.summary.scalar("val/map50", result["map50"])
                    tf.summary.scalar("val/coco_map", result.get("coco_map", 0.0))
                if result["map50"] > float(self.best_map.numpy()):
                    improved = True
                    self.best_map.assign(result["map50"])
                    self.stale_epochs.assign(0)
                    atomic_save_model(self.model, self.out_dir / "best.keras")
                    metrics = {
                        "best_epoch": epoch,
                        "val_map50": result["map50"],
                        "val_coco_map": result.get("coco_map"),
                        "per_class_ap50": result.get("per_class_ap50"),
                        "elapsed_s": row["elapsed_s"],
                    }
                else:
                    self.stale_epochs.assign_add(self.config.eval_every)
            self.writer.flush()
            atomic_save_model(self.model, self.out_dir / "last.keras")
            self.epoch.assign(epoch)
            self.elapsed.assign(time.monotonic() - start)  # with this epoch's evaluation and saving
            self.manager.save(checkpoint_number=epoch)
            history.append(row)
            self._write_history(history)
            metrics["epochs_run"] = epoch
            metrics["train_seconds"] = row["elapsed_s"]
            atomic_write_text(self.out_dir / "metrics.json", json.dumps(metrics, indent=2))
            tqdm.write(
                f"epoch {epoch:3d}  loss {mean[0]:.3f} (cls {mean[1]:.3f}, loc {mean[2]:.3f})  lr {learning_rate:.2e}"
                + (f"  val mAP@0.5 {row['map50']:.4f}{' *best*' if improved else ''}" if row["map50"] != "" else "")
                + f"  [{row['elapsed_s']:.0f} s]"
            )
            if int(self.stale_epochs.numpy()) >= self.config.patience:
                tqdm.write(f"early stopping: no val mAP improvement for {self.config.patience} epochs")
                break
            if out_of_time:
                tqdm.write(
                    f"stopping: another epoch (~{epoch_seconds:.0f} s) would pass the time budget "
                    f"of {self.config.max_train_minutes:g} min"
                )
                break
        metrics["anchor_code_version"] = ANCHOR_CODE_VERSION
        return metrics
