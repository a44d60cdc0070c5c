"""train.rundir: one reader of run.json for every stage, errors naming the file and the field."""

import json

import pytest

from train.config import ModelConfig
from train.rundir import RunDir, RunDirError, resolve_run

CONFIG = ModelConfig(alpha=0.25, input_size=(96, 96), num_classes=2)


def _run(tmp_path, **fields) -> RunDir:
    run = RunDir(tmp_path / "run")
    run.write_info({"model": CONFIG.to_dict(), "labels": ["a", "b"], **fields})
    return run


def test_read_info_returns_the_config_labels_data_and_splits(tmp_path):
    run = _run(tmp_path, data="/data/set", splits={"train": "trainval", "val": "test"}, command="python -m train")
    info = run.read_info()
    assert info.config == CONFIG and info.labels == ["a", "b"]
    assert str(info.data) == "/data/set" and info.command == "python -m train"
    assert info.split("train") == "trainval" and info.split("val") == "test" and info.split("val", "other") == "other"


def test_defaults_when_optional_fields_are_absent(tmp_path):
    info = _run(tmp_path).read_info()
    assert info.data is None and info.split("train") == "train" and info.split("val") == "val"


def test_data_from_older_runs_as_a_path_object_is_read(tmp_path):
    assert str(_run(tmp_path, data={"path": "/d"}).read_info().data) == "/d"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data": 3}, "field 'data' must be a path string"),
        ({"labels": ["a"]}, "field 'labels' must be a list of 2 names"),
        ({"model": {"alpha": 0.5}}, "field 'model'"),
        ({"splits": ["train"]}, "field 'splits'"),
    ],
)
def test_a_bad_field_names_the_file_and_the_field(tmp_path, fields, message):
    run = _run(tmp_path, **fields)
    with pytest.raises(RunDirError, match=message) as error:
        run.read_info()
    assert str(run.run_json) in str(error.value)


def test_missing_run_json_and_missing_data_say_what_to_do(tmp_path):
    with pytest.raises(RunDirError, match="is this a training run directory"):
        RunDir(tmp_path).read_info()
    run = _run(tmp_path)
    with pytest.raises(RunDirError, match="field 'data' is missing; pass --data"):
        run.data_path()
    assert str(run.data_path("/elsewhere")) == "/elsewhere"


def test_checkpoint_names_and_resolve_run(tmp_path):
    run = _run(tmp_path)
    with pytest.raises(FileNotFoundError, match="best.keras"):
        run.checkpoint("best")
    with pytest.raises(FileNotFoundError, match="no best.keras"):
        resolve_run(run.path)
    run.best.write_bytes(b"model")
    assert run.checkpoint("best") == run.best
    assert resolve_run(run.path) == (run, run.best)
    assert resolve_run(run.best) == (run, run.best)
    with pytest.raises(ValueError, match="ending in .keras"):
        resolve_run(run.run_json)


def test_another_model_in_the_folder_is_refused_and_progress_is_cleared(tmp_path):
    run = _run(tmp_path)
    run.check_same_model({"model": CONFIG.to_dict(), "labels": ["a", "b"]})
    other = ModelConfig(alpha=0.5, input_size=(96, 96), num_classes=2)
    with pytest.raises(RunDirError, match="different model or labels"):
        run.check_same_model({"model": other.to_dict(), "labels": ["a", "b"]})
    run.write_history([{"epoch": 1, "loss": 0.5}])
    run.write_metrics({"epochs_run": 1})
    run.state.mkdir()
    assert run.read_history() == [{"epoch": "1", "loss": "0.5"}] and run.read_metrics() == {"epochs_run": 1}
    run.clear_progress()
    assert run.read_history() == [] and run.read_metrics() == {} and not run.state.exists()
    assert json.loads(run.run_json.read_text())["labels"] == ["a", "b"]
