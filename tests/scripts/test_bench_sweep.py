"""The multiplier sweep (scripts/bench_sweep.py) on a tiny grid: well-formed CSV/Markdown/PNG, failing cells reported."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from scripts import bench_sweep as sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """alpha 0.25 x sizes 96, 16 (invalid: below the 32 px minimum), 128; few runs, private cache."""
    root = tmp_path_factory.mktemp("sweep")
    out, cache = root / "out", root / "cache"
    args = ["--alphas", "0.25", "--sizes", "96,16,128", "--runs", "3", "--warmup", "1", "--e2e-frames", "5"]
    args += ["--min-seconds", "0", "--e2e-seconds", "0"]
    args += ["--calibration-images", "2", "--runs-dir", str(root / "no_runs"), "--cache-dir", str(cache)]
    status = sweep.main([*args, "--out", str(out)])
    return status, out, cache


def _rows(out: Path) -> list[dict]:
    with (out / "sweep.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == sweep.COLUMNS
        return list(reader)


def test_csv_has_one_well_formed_row_per_cell(tiny_sweep):
    status, out, _ = tiny_sweep
    assert status == 0
    rows = _rows(out)
    assert [r["cell"] for r in rows] == ["a0.25_s96", "a0.25_s16", "a0.25_s128"]
    good = [rows[0], rows[2]]
    numeric = [c for c in sweep.COLUMNS if c.endswith(("_ms_1t", "_ms_mt", "_bytes")) or c in ("params", "macs")]
    for row in good:
        assert row["status"] == "latency-only" and row["error"] == ""
        assert row["map50_float"] == row["map50_int8"] == ""
        for column in [*numeric, "e2e_fps", "num_anchors", "threads", "seconds"]:
            value = float(row[column])
            assert math.isfinite(value) and value > 0, (row["cell"], column, row[column])
        for quant in ("float32", "int8"):
            for suffix in ("1t", "mt"):
                assert float(row[f"{quant}_p95_ms_{suffix}"]) >= float(row[f"{quant}_p50_ms_{suffix}"])
        assert int(row["int8_bytes"]) < int(row["float32_bytes"]) / 2  # int8 weights: about a quarter
    # Same width multiplier: same parameters; a larger input costs more multiply-adds and has more anchors.
    assert rows[0]["params"] == rows[2]["params"]
    assert int(rows[2]["macs"]) > int(rows[0]["macs"])
    assert int(rows[2]["num_anchors"]) > int(rows[0]["num_anchors"])


def test_failing_cell_is_reported_and_the_rest_go_on(tiny_sweep):
    _, out, _ = tiny_sweep
    bad = _rows(out)[1]
    assert bad["status"] == "error"
    assert "ValueError" in bad["error"] and "32" in bad["error"]
    assert bad["params"] == "" and bad["e2e_fps"] == ""
    table = (out / "sweep.md").read_text()
    assert "| a0.25_s16 | error: ValueError" in table
    assert table.count("| a0.25_s") == 3


def test_plots_are_pngs_and_no_accuracy_plot_without_checkpoints(tiny_sweep):
    _, out, _ = tiny_sweep
    for name in ("latency_vs_macs.png", "fps_vs_macs.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert not (out / "accuracy_vs_latency.png").exists()


def test_converted_models_are_cached(tiny_sweep):
    _, _, cache = tiny_sweep
    files = sorted(cache.rglob("*.tflite"))
    assert {p.parent.name for p in files} == {"a0.25_s96", "a0.25_s128"}
    assert len(files) == 4
    before = {p: p.stat().st_mtime_ns for p in files}
    settings = sweep.SweepSettings(runs=1, warmup=0, e2e_frames=2, calibration_images=2, runs_dir=None, cache_dir=cache)
    (row,) = sweep.run_sweep([0.25], [96], settings)
    assert row["status"] == "latency-only"
    assert {p: p.stat().st_mtime_ns for p in sorted(cache.rglob("*.tflite"))} == before


def test_all_cells_failing_exits_nonzero(tmp_path):
    status = sweep.main(["--alphas", "-1", "--sizes", "96", "--out", str(tmp_path), "--cache-dir", str(tmp_path)])
    assert status == 1
    (row,) = _rows(tmp_path)
    assert row["status"] == "error" and "alpha" in row["error"]
    assert not (tmp_path / "latency_vs_macs.png").exists()


def test_pareto_front_keeps_only_undominated_points():
    points = [(10.0, 50.0), (5.0, 40.0), (12.0, 45.0), (20.0, 60.0), (5.0, 30.0)]
    assert sweep.pareto_front(points) == [1, 0, 3]


def test_markdown_marks_trained_and_latency_only_cells():
    base = {c: 1.0 for c in sweep.COLUMNS}
    trained = {**base, "cell": "a0.50_s160", "status": "trained", "map50_float": 0.8, "map50_int8": 0.79}
    untrained = {**base, "cell": "a0.25_s128", "status": "latency-only", "map50_float": "", "map50_int8": ""}
    table = sweep.markdown_table([trained, untrained])
    assert "80.0 / 79.0" in table
    assert table.splitlines()[-1].endswith("| latency-only |")


def test_from_csv_rerenders_without_measuring(tiny_sweep, tmp_path):
    _, out, _ = tiny_sweep
    argv = ["--from-csv", str(out / "sweep.csv"), "--out", str(tmp_path), "--cache-dir", str(tmp_path / "c")]
    assert sweep.main(argv) == 0
    assert (tmp_path / "sweep.csv").read_text() == (out / "sweep.csv").read_text()
    assert (tmp_path / "fps_vs_macs.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "c").exists()  # nothing converted
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other.csv: header"):
        sweep.main(["--from-csv", str(bad), "--out", str(tmp_path / "x")])
