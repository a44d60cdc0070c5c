"""``python -m train --strategy multiworker``: two real worker processes on loopback train, evaluate and
write one run directory (the chief's)."""

import json
import os
import socket
import subprocess
import sys

from tests.conftest import ROOT
from train.synthetic import generate_dataset

TINY_ARGS = ["--alpha", "0.25", "--size", "96", "--batch-size", "4", "--augment", "light", "--epochs", "1"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_workers_on_loopback_train_evaluate_and_only_the_chief_writes(tmp_path):
    data = generate_dataset(tmp_path / "data", 24, seed=3, width=160, height=120, val_fraction=0.25, progress=False)
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    workers = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            "TMPDIR": str(scratch),
            "PYTHONPATH": str(ROOT),
            "CUDA_VISIBLE_DEVICES": "",
        }
        command = [sys.executable, "-m", "train", "--data", str(data), "--out", str(out), "--strategy", "multiworker"]
        workers.append(
            subprocess.Popen(
                [*command, *TINY_ARGS], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=540)[0])
    finally:
        for worker in workers:
            worker.kill()
    for index, (worker, output) in enumerate(zip(workers, outputs, strict=True)):
        assert worker.returncode == 0, f"worker {index}:\n{output[-3000:]}"
        assert "best val mAP@0.5" in output, f"worker {index}:\n{output[-3000:]}"

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1 and "val_map50" in metrics
    assert json.loads((out / "run.json").read_text())["train"]["strategy"] == "multiworker"
    assert (out / "best.keras").is_file() and (out / "last.keras").is_file()
    assert len(list((out / "logs").iterdir())) == 1, "only the chief writes TensorBoard events"
    for index in range(2):  # the non-chief worker's checkpoint folder is removed, the chief wrote none there
        assert not list((tmp_path / f"tmp{index}").glob("train-worker-*")), index
