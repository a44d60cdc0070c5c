"""train.lib: training as a library call, no command line involved."""

import json

import pytest

from train.augment import AugmentConfig
from train.config import ModelConfig
from train.lib import DataConfig, TrainingError, load_training_data, run
from train.rundir import RunDir, RunDirError
from train.synthetic import generate_dataset
from train.trainer import TrainConfig

CONFIG = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = generate_dataset(
        tmp_path_factory.mktemp("data") / "synthetic",
        16,
        seed=5,
        width=128,
        height=96,
        val_fraction=0.25,
        progress=False,
    )
    return load_training_data(DataConfig(root))


def test_run_returns_the_metrics_and_writes_the_run_directory(data, tmp_path):
    metrics = run(CONFIG, TrainConfig(epochs=1, batch_size=4), data, tmp_path / "run", augment=AugmentConfig.none())
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1 and "val_map50" in metrics
    info = RunDir(tmp_path / "run").read_info()
    assert info.config == CONFIG and info.labels == data.labels and info.split("val") == "val"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"] == 1

    other = ModelConfig(alpha=0.5, input_size=(96, 96), num_classes=4)
    with pytest.raises(RunDirError, match="different model"):
        run(other, TrainConfig(epochs=1, batch_size=4), data, tmp_path / "run")


def test_a_class_count_other_than_the_labels_is_refused(data, tmp_path):
    with pytest.raises(TrainingError, match="num_classes is 2 but the data has 4 labels"):
        run(ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=2), TrainConfig(), data, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_bad_data_format_names_the_choices():
    with pytest.raises(ValueError, match="DataConfig.format must be one of"):
        DataConfig("somewhere", format="yolo")
