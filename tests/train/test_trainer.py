"""The training loop: loss falls, run directory contents, resume, interruption keeps the last good checkpoint."""

import contextlib
import csv
import errno
import io
import itertools
import json
import logging
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.train.test_datasets import _voc_xml, make_voc
from train.cli import build_parser, format_map, main
from train.config import AUGMENT_PRESETS, OPTIMIZERS, STRATEGIES, ModelConfig
from train.datasets import FORMATS, load_dataset
from train.model import build_ssd
from train.pipeline import make_dataset
from train.synthetic import generate_dataset
from train.trainer import TrainConfig, Trainer

TINY_ARGS = ["--alpha", "0.25", "--size", "96", "--batch-size", "4", "--augment", "light", "--eval-every", "1"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("data") / "synthetic",
        24,
        seed=3,
        width=160,
        height=120,
        val_fraction=0.25,
        progress=False,
    )


def _fixed_batch_trainer(data, out, train_config: TrainConfig, steps_per_epoch: int) -> tuple[Trainer, tuple]:
    """A Trainer on one fixed batch of 8 images (alpha 0.25, 96x96) whose evaluation always says mAP 0."""
    records = load_dataset(data, "train").records[:8]
    config = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=4)
    keras.utils.set_random_seed(0)
    model = build_ssd(config)
    batch = next(iter(make_dataset(records, config, 8, training=False)))
    train_data = tf.data.Dataset.from_tensors(batch).repeat()
    trainer = Trainer(
        model,
        train_config,
        out,
        train_data,
        steps_per_epoch,
        lambda m: {"map50": 0.0, "coco_map": 0.0},
        tf.distribute.get_strategy(),
        {},
    )
    return trainer, batch


def test_a_few_steps_on_a_fixed_batch_make_the_loss_fall(tiny_data, tmp_path):
    config = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0)
    trainer, (images, targets) = _fixed_batch_trainer(tiny_data, tmp_path, config, 20)
    losses = [float(trainer._step(images, targets)[0]) for _ in range(20)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_cli_writes_the_run_directory_and_resumes(tiny_data, tmp_path, caplog):
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--epochs", "1", "--out", str(out), *TINY_ARGS]) == 0
    for name in ("run.json", "best.keras", "last.keras", "metrics.json", "history.csv"):
        assert (out / name).is_file(), name
    assert any((out / "logs").iterdir()), "TensorBoard logs"
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["alpha"] == 0.25 and run["model"]["input_size"] == [96, 96]
    assert run["labels"] == ["circle", "triangle", "square", "star"]
    model = keras.models.load_model(out / "best.keras")
    assert [o.shape[-1] for o in model.outputs] == [4, 5]

    with caplog.at_level(logging.INFO, logger="train.lib"):
        assert main(["--data", str(tiny_data), "--epochs", "2", "--out", str(out), *TINY_ARGS]) == 0
    assert "resuming" in caplog.text
    with (out / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2


def test_a_run_with_other_multipliers_in_the_same_folder_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--epochs", "1", "--out", str(out), *TINY_ARGS]) == 0
    other = [a if a != "0.25" else "0.5" for a in TINY_ARGS]
    assert main(["--data", str(tiny_data), "--epochs", "1", "--out", str(out), *other]) == 2
    assert "different model" in capsys.readouterr().err


def test_interruption_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--epochs", "1", "--out", str(out), *TINY_ARGS]) == 0
    best_before = (out / "best.keras").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("train.evaluate.evaluate_model", interrupted)
    assert main(["--data", str(tiny_data), "--epochs", "3", "--out", str(out), *TINY_ARGS]) == 130
    assert (out / "best.keras").read_bytes() == best_before
    keras.models.load_model(out / "last.keras")
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1
    assert not list(out.glob(".*tmp*")), "no temporary files left behind"


def test_time_budget_stops_before_an_epoch_that_would_pass_it(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    # 1 ms of budget: the first epoch always runs, and the second would pass the budget.
    args = ["--data", str(tiny_data), "--epochs", "3", "--max-train-minutes", "0.00002", "--out", str(out)]
    assert main([*args, *TINY_ARGS]) == 0
    assert "would pass the time budget" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1
    assert (out / "best.keras").is_file()


def test_mirrored_strategy_trains_the_fused_twin_and_saves_plain_keras(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(tiny_data), "--epochs", "1", "--strategy", "mirrored", "--out", str(out)]
    assert main([*args, *TINY_ARGS]) == 0
    model = keras.models.load_model(out / "best.keras")  # no custom objects needed
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(layer) is keras.layers.BatchNormalization for layer in norms)
    # the saved model carries the trained statistics copied back from the twin, not fresh ones
    assert not np.allclose(model.get_layer("conv1_bn").moving_variance.numpy(), 1.0)


def test_resume_carries_the_elapsed_time_and_the_budget_over(tiny_data, tmp_path, monkeypatch):
    clock = itertools.count(0.0, 100.0)  # every reading of the clock is 100 s after the previous one
    monkeypatch.setattr("train.trainer.time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    first, _ = _fixed_batch_trainer(tiny_data, tmp_path, TrainConfig(epochs=1, batch_size=8, warmup_epochs=0), 1)
    first.fit()
    # 8 min of budget: the second epoch ends past 300 s of training in all, and a third (~100 s) would pass it
    config = TrainConfig(epochs=3, batch_size=8, warmup_epochs=0, max_train_minutes=8)
    second, _ = _fixed_batch_trainer(tiny_data, tmp_path, config, 1)
    assert second.restore()
    metrics = second.fit()
    with (tmp_path / "history.csv").open() as handle:
        elapsed = [float(r["elapsed_s"]) for r in csv.DictReader(handle)]
    assert len(elapsed) == 2 and elapsed[1] >= elapsed[0] + 200, elapsed
    assert metrics["epochs_run"] == 2 and metrics["train_seconds"] == elapsed[1]


def test_cli_choices_are_the_library_constants():
    choices = {action.dest: action.choices for action in build_parser()._actions if action.choices}
    assert choices == {"format": FORMATS, "optimizer": OPTIMIZERS, "strategy": STRATEGIES, "augment": AUGMENT_PRESETS}


@pytest.fixture(scope="module")
def adamw_fine_tune_run(tiny_data, tmp_path_factory):
    """One run with flags that used to be dropped: --optimizer adamw, --fine-tune-from without --freeze-backbone."""
    out = tmp_path_factory.mktemp("adamw") / "run"
    args = ["--data", str(tiny_data), "--epochs", "1", "--optimizer", "adamw", "--fine-tune-from", "12"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([*args, "--out", str(out), *TINY_ARGS]) == 0
    return out, stdout.getvalue()


def test_optimizer_flag_reaches_the_trainer(adamw_fine_tune_run):
    out, _ = adamw_fine_tune_run
    assert json.loads((out / "run.json").read_text())["train"]["optimizer"] == "adamw"


def test_fine_tune_from_alone_freezes_the_earlier_blocks(adamw_fine_tune_run):
    out, _ = adamw_fine_tune_run
    assert json.loads((out / "run.json").read_text())["train"]["fine_tune_from"] == 12
    model = keras.models.load_model(out / "best.keras")
    assert not model.get_layer("conv1").trainable and not model.get_layer("conv_pw_11").trainable
    assert model.get_layer("conv_dw_12").trainable and model.get_layer("conv_pw_13").trainable


def test_run_json_records_the_detected_dataset_format(adamw_fine_tune_run):
    out, _ = adamw_fine_tune_run
    assert json.loads((out / "run.json").read_text())["format"] == "voc"


def test_the_last_line_prints_a_zero_map_as_zero(adamw_fine_tune_run):
    _, stdout = adamw_fine_tune_run
    done = next(line for line in stdout.splitlines() if line.startswith("done in"))
    assert "nan" not in done
    assert format_map(0.0) == "0.0000" and format_map(0.5) == "0.5000"
    assert format_map(float("nan")).startswith("n/a (") and "ground-truth" in format_map(float("nan"))
    assert format_map(None) == "n/a (never evaluated)"


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_a_bad_annotation_is_one_line_naming_file_and_field(tmp_path, capsys):
    bad = _voc_xml([("cat", (1, "abc", 10, 10))])
    root = make_voc(tmp_path / "voc", {"a": bad, "b": _voc_xml([("cat", (5, 5, 10, 10))])})
    assert main(["--data", str(root), "--epochs", "1", "--out", str(tmp_path / "run"), *TINY_ARGS]) == 2
    [line] = _error_lines(capsys)
    assert "a.xml: object[0]/bndbox/ymin: expected a number" in line and "train.check_data" in line


def test_unreachable_imagenet_weights_are_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None --\n[Errno -3] name resolution")

    monkeypatch.setattr("keras.applications.MobileNet", offline)
    args = ["--data", str(tiny_data), "--backbone-weights", "imagenet", "--out", str(tmp_path / "run")]
    assert main([*args, *TINY_ARGS]) == 2
    [line] = _error_lines(capsys)
    assert "backbone_weights='imagenet'" in line and "--backbone-weights PATH" in line


def test_a_full_disk_is_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    def disk_full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("train.rundir.atomic_write_text", disk_full)
    out = tmp_path / "run"
    assert main(["--data", str(tiny_data), "--epochs", "1", "--out", str(out), *TINY_ARGS]) == 2
    [line] = _error_lines(capsys)
    assert "No space left on device" in line and str(out) in line and "resume" in line
