"""The training loop: multibox loss, cosine LR with warm-up, best-by-mAP checkpoints, resume, early stopping.

A custom ``tf.function`` step (rather than ``Model.fit``) because the multibox loss needs box and class
outputs together (positives normalise both terms) and ``tf.distribute`` strategies run it unchanged.

The run directory is written through ``train.rundir.RunDir`` (``state/`` is the ``tf.train.Checkpoint`` of
weights, optimizer, epoch, best mAP and training seconds, used for resuming). Every file is written to a
temporary name and renamed, so an interrupted run always leaves its last good checkpoint and report intact.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from edge.anchors import ANCHOR_CODE_VERSION
from train.config import OPTIMIZERS, STRATEGIES
from train.fused_batch_norm import copy_weights, with_fused_batch_norm
from train.rundir import RunDir

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


@dataclasses.dataclass
class EpochResult:
    """What one epoch measured: mean losses, the learning rate at its end and the wall-clock seconds."""

    epoch: int
    loss: float
    cls_loss: float
    loc_loss: float
    learning_rate: float
    seconds: float


class Trainer:
    """Trains ``model`` on ``train_data`` and keeps the run directory ``out`` up to date after every epoch.

    ``train_data`` yields ``(images (B,H,W,3) float32 0..255, {"box_deltas": (B,N,4), "class_labels": (B,N)})``
    with ``B`` the global batch; ``evaluate_fn(model) -> dict`` must return at least ``map50`` (validation
    mAP@0.5). ``model`` is the inference model (``train.model.build_ssd``), built outside ``strategy.scope()``:
    the trainer distributes a fused-batch-norm twin of it and copies the twin's weights back into it before
    every evaluation and save, so evaluation and saving never go through the strategy.

    Under ``MultiWorkerMirroredStrategy`` every worker trains, evaluates and checkpoints (checkpointing is
    collective), but only the chief (``strategy.extended.should_checkpoint``) writes ``out``; the others
    write to a temporary folder that is deleted when ``fit`` returns. Every worker resumes from
    ``out/state``, so resuming a multi-worker run needs ``out`` on a filesystem all workers share.
    """

    def __init__(
        self,
        model: keras.Model,
        train_config: TrainConfig,
        out: RunDir | Path,
        train_data: tf.data.Dataset,
        steps_per_epoch: int,
        evaluate_fn: Callable[[keras.Model], dict],
        strategy: tf.distribute.Strategy,
        run_info: dict,
    ) -> None:
        from train.loss import MultiboxLoss

        self.model = model
        self.config = train_config
        self.out = out if isinstance(out, RunDir) else RunDir(out)
        self.is_chief = bool(strategy.extended.should_checkpoint)
        # Non-chief workers checkpoint too (collective), into a folder of their own that fit() removes.
        self._scratch = None if self.is_chief else tempfile.TemporaryDirectory(prefix="train-worker-")
        state_dir = self.out.state if self._scratch is None else Path(self._scratch.name) / "state"
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
        options = tf.data.Options()
        # Each worker reads the whole (in-memory) list and keeps its share of the batches.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        self.train_data = strategy.experimental_distribute_dataset(train_data.with_options(options))
        self.checkpoint = tf.train.Checkpoint(
            model=self.training_model,
            optimizer=self.optimizer,
            epoch=self.epoch,
            best_map=self.best_map,
            stale_epochs=self.stale_epochs,
            elapsed=self.elapsed,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(state_dir), max_to_keep=2)
        self.writer = (
            tf.summary.create_file_writer(str(self.out.logs)) if self.is_chief else tf.summary.create_noop_writer()
        )
        self._step = tf.function(self._distributed_step, reduce_retracing=True)
        self._sum_over_replicas = tf.function(self._distributed_sum)

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

    def _distributed_sum(self, value: tf.Tensor) -> tf.Tensor:
        per_replica = self.strategy.run(lambda: tf.identity(value))
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def any_worker(self, flag: bool) -> bool:
        """True when ``flag`` is true on any worker, so that every worker takes the same decision (a worker that
        stopped alone would leave the others waiting in the next collective step)."""
        return bool(self._sum_over_replicas(tf.constant(float(flag))) > 0)

    def restore(self) -> bool:
        """Resume from ``out/state`` if present; returns whether anything was restored.

        Every worker must restore the same epoch: ``RuntimeError`` if some found a checkpoint and others did
        not (a multi-worker ``--out`` that is not on a shared filesystem).
        """
        latest = tf.train.latest_checkpoint(str(self.out.state))
        if latest is not None:
            self.checkpoint.restore(latest).expect_partial()
        epoch = int(self.epoch.numpy())
        if self.any_worker(latest is None) and self.any_worker(latest is not None):
            raise RuntimeError(
                f"{self.out.state}: some workers found a checkpoint to resume from and others did not; "
                "put --out on a filesystem every worker shares, or pass --restart"
            )
        if latest is None:
            return False
        copy_weights(self._twin, self.model)
        log.info("resumed from %s at epoch %d (best mAP@0.5 %.4f)", latest, epoch, float(self.best_map.numpy()))
        return True

    def train_epoch(self, epoch: int, batches) -> EpochResult:
        """Run ``steps_per_epoch`` steps from the iterator ``batches``; ``FloatingPointError`` on a non-finite loss."""
        started = time.monotonic()
        sums = np.zeros(3)
        bar = tqdm(
            range(self.steps_per_epoch),
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="step",
            dynamic_ncols=True,
            leave=False,
            disable=not self.is_chief,
        )
        for step in bar:
            images, targets = next(batches)
            values = [float(v) for v in self._step(images, targets)]
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(
                    f"loss became {values} at epoch {epoch} step {step}; last good checkpoint kept in {self.out}"
                )
            sums += values
            bar.set_postfix(
                loss=f"{sums[0] / (step + 1):.3f}", cls=f"{sums[1] / (step + 1):.3f}", loc=f"{sums[2] / (step + 1):.3f}"
            )
        bar.close()
        copy_weights(self._twin, self.model)
        mean = sums / self.steps_per_epoch
        return EpochResult(
            epoch, mean[0], mean[1], mean[2], float(self.optimizer.learning_rate), time.monotonic() - started
        )

    def out_of_time(self, elapsed: float, epoch_seconds: float) -> bool:
        """The budget is a ceiling: true when one more epoch like the last one would pass it (on any worker)."""
        budget = self.config.max_train_minutes
        return self.any_worker(budget is not None and elapsed + epoch_seconds > 60 * budget)

    def evaluate(self, epoch: int) -> dict:
        """``evaluate_fn`` on the inference model, logged to TensorBoard; updates the best mAP and the staleness.

        Returns the evaluation result with ``improved`` added (True when ``map50`` beat the best so far).
        """
        result = dict(self.evaluate_fn(self.model))
        with self.writer.as_default(step=epoch):
            tf.summary.scalar("val/map50", result["map50"])
            tf.summary.scalar("val/coco_map", result.get("coco_map", 0.0))
        result["improved"] = result["map50"] > float(self.best_map.numpy())
        if result["improved"]:
            self.best_map.assign(result["map50"])
            self.stale_epochs.assign(0)
        else:
            self.stale_epochs.assign_add(self.config.eval_every)
        return result

    def save(self, epoch: int, elapsed: float, improved: bool) -> None:
        """Write ``best.keras`` (when ``improved``), ``last.keras`` and the training state after ``epoch``."""
        if self.is_chief:
            if improved:
                self.out.save_model(self.model, self.out.best)
            self.out.save_model(self.model, self.out.last)
        self.epoch.assign(epoch)
        self.elapsed.assign(elapsed)
        self.manager.save(checkpoint_number=epoch)  # collective under MultiWorkerMirroredStrategy

    def patience_ran_out(self) -> bool:
        return self.any_worker(int(self.stale_epochs.numpy()) >= self.config.patience)

    def _log_losses(self, result: EpochResult) -> None:
        with self.writer.as_default(step=result.epoch):
            tf.summary.scalar("loss/total", result.loss)
            tf.summary.scalar("loss/cls", result.cls_loss)
            tf.summary.scalar("loss/loc", result.loc_loss)
            tf.summary.scalar("lr", result.learning_rate)

    def _say(self, message: str) -> None:
        if self.is_chief:
            tqdm.write(message)

    def fit(self) -> dict:
        """Train until ``epochs``, early stopping or the time budget; returns the final ``metrics.json`` dict."""
        try:
            return self._fit()
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()

    def due_for_evaluation(self, epoch: int, out_of_time: bool) -> bool:
        """Every ``eval_every`` epochs, and after the last epoch (by count or by the time budget)."""
        return epoch % self.config.eval_every == 0 or epoch == self.config.epochs or out_of_time

    def _fit(self) -> dict:
        if self.is_chief:
            self.out.write_info(self.run_info)
        history = self.out.read_history() if self.is_chief else []
        metrics = self.out.read_metrics() if self.is_chief else {}
        start = time.monotonic() - float(self.elapsed.numpy())  # resumed: count the earlier epochs' time too
        batches = iter(self.train_data)
        while int(self.epoch.numpy()) < self.config.epochs:
            epoch = int(self.epoch.numpy()) + 1
            result = self.train_epoch(epoch, batches)
            self._log_losses(result)
            now = time.monotonic()
            out_of_time = self.out_of_time(now - start, result.seconds)
            evaluation = self.evaluate(epoch) if self.due_for_evaluation(epoch, out_of_time) else None
            improved = evaluation is not None and evaluation["improved"]
            self.writer.flush()
            self.save(epoch, time.monotonic() - start, improved)  # with this epoch's evaluation
            row = _history_row(result, round(now - start, 1), evaluation)
            if improved:
                metrics = _best_metrics(epoch, evaluation, row["elapsed_s"])
            metrics.update(epochs_run=epoch, train_seconds=row["elapsed_s"])
            history.append(row)
            if self.is_chief:
                self.out.write_history(history)
                self.out.write_metrics(metrics)
            self._say(_epoch_line(result, row, improved))
            if self.patience_ran_out():
                self._say(f"early stopping: no val mAP improvement for {self.config.patience} epochs")
                break
            if out_of_time:
                self._say(
                    f"stopping: another epoch (~{result.seconds:.0f} s) would pass the time budget "
                    f"of {self.config.max_train_minutes:g} min"
                )
                break
        metrics["anchor_code_version"] = ANCHOR_CODE_VERSION
        return metrics


def _history_row(result: EpochResult, elapsed: float, evaluation: dict | None) -> dict:
    """One ``history.csv`` row; ``map50``/``coco_map`` are empty for epochs without evaluation."""
    return {
        "epoch": result.epoch,
        "loss": round(result.loss, 5),
        "cls_loss": round(result.cls_loss, 5),
        "loc_loss": round(result.loc_loss, 5),
        "lr": f"{result.learning_rate:.6g}",
        "map50": "" if evaluation is None else round(evaluation["map50"], 4),
        "coco_map": "" if evaluation is None else round(evaluation.get("coco_map", 0.0), 4),
        "elapsed_s": elapsed,
    }


def _best_metrics(epoch: int, evaluation: dict, elapsed: float) -> dict:
    """``metrics.json`` for a new best epoch (``epochs_run`` and ``train_seconds`` are added every epoch)."""
    return {
        "best_epoch": epoch,
        "val_map50": evaluation["map50"],
        "val_coco_map": evaluation.get("coco_map"),
        "per_class_ap50": evaluation.get("per_class_ap50"),
        "elapsed_s": elapsed,
    }


def _epoch_line(result: EpochResult, row: dict, improved: bool) -> str:
    line = (
        f"epoch {result.epoch:3d}  loss {result.loss:.3f} (cls {result.cls_loss:.3f}, loc {result.loc_loss:.3f})  "
        f"lr {result.learning_rate:.2e}"
    )
    if row["map50"] != "":
        line += f"  val mAP@0.5 {row['map50']:.4f}{' *best*' if improved else ''}"
    return line + f"  [{row['elapsed_s']:.0f} s]"
