"""deploy/pi.py without a Pi: PI parsing, the generated inventory, and an unreachable host failing fast."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import pi

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = Path(sys.executable).with_name("ansible-playbook")


def test_parse_pi_users_ports_and_several_hosts() -> None:
    targets = pi.parse_pi("pi@raspberrypi.local  root@127.0.0.1:2222,10.0.0.7")
    assert targets == [
        pi.Target("pi", "raspberrypi.local", 22),
        pi.Target("root", "127.0.0.1", 2222),
        pi.Target(None, "10.0.0.7", 22),
    ]
    assert [t.name for t in targets] == ["raspberrypi.local", "127.0.0.1_2222", "10.0.0.7"]


@pytest.mark.parametrize("value", ["", "  ", "pi@host:99999", "a@b@c", "pi@host:2222 pi@host:2222"])
def test_parse_pi_rejects_bad_values(value: str) -> None:
    with pytest.raises(ValueError, match="PI"):
        pi.parse_pi(value)


def test_inventory_has_bounded_ssh_and_emulator_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pi, "EMULATOR_CACHE", tmp_path)
    state = tmp_path / "state-bookworm"
    state.mkdir()
    (state / "port").write_text("2299\n")
    inv = pi.inventory(pi.parse_pi("root@127.0.0.1:2299 pi@raspberrypi.local"))
    hosts = inv["all"]["children"]["pis"]["hosts"]
    emulator, real = hosts["127.0.0.1_2299"], hosts["raspberrypi.local"]
    assert emulator["edge_emulator"] is True and real["edge_emulator"] is False
    assert emulator["ansible_port"] == 2299 and emulator["ansible_user"] == "root"
    assert f"IdentityFile={state / 'id_ed25519'}" in emulator["ansible_ssh_common_args"]
    assert "IdentityFile" not in real["ansible_ssh_common_args"]
    for host in (emulator, real):
        assert f"ConnectTimeout={pi.CONNECT_TIMEOUT_S}" in host["ansible_ssh_common_args"]
        assert "BatchMode=yes" in host["ansible_ssh_common_args"]


def test_remote_run_script_quotes_arguments() -> None:
    script = pi.remote_run_script(["--source", "synthetic", "--report", "/tmp/a b.json"])
    assert "'/tmp/a b.json'" in script
    assert "/opt/edge/models/current.tflite" in script and "edge.doctor --emulated" in script


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible-core not installed (pip install -r requirements/deploy.txt)")
def test_deploy_to_unreachable_host_fails_fast_and_clearly(tmp_path: Path) -> None:
    model = tmp_path / "dummy.tflite"
    model.write_bytes(b"not deployed: the host is unreachable")
    port = _closed_port()
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "deploy/pi.py", "deploy", "--pi", f"nobody@127.0.0.1:{port}", "--model", str(model)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert f"127.0.0.1_{port}: UNREACHABLE" in proc.stdout, proc.stdout[-2000:]
    assert f"127.0.0.1:{port}" in proc.stdout
    assert elapsed < 60, f"took {elapsed:.0f} s"


def test_deploy_refuses_a_missing_model(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "deploy/pi.py", "deploy", "--pi", "pi@127.0.0.1:1", "--model", str(tmp_path / "no.tflite")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no.tflite: no such file" in proc.stderr


def test_bundle_release_id_follows_content(tmp_path: Path) -> None:
    from deploy import bundle

    files = [tmp_path / "a.py", tmp_path / "b.txt"]
    for f in files:
        f.write_text("x = 1\n")
    monkey_root = bundle.ROOT
    try:
        bundle.ROOT = tmp_path
        first = bundle.release_id(files)
        assert first == bundle.release_id(files)
        files[1].write_text("x = 2\n")
        assert bundle.release_id(files) != first
    finally:
        bundle.ROOT = monkey_root
    assert json.dumps(first)


def test_edge_wheel_is_the_runtime_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    from deploy import bundle

    monkeypatch.setattr(bundle, "CACHE", tmp_path)
    wheel = bundle.build_wheel("test")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    packages = {n.split("/")[0] for n in names if not n.endswith(".dist-info/" + n.split("/")[-1])}
    assert packages == {"edge"}
    assert "edge/doctor.py" in names and "edge/cli.py" in names and "edge/anchors.py" in names
    assert "edge = edge.cli:main" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist")]
    assert {r.split(">")[0].split("=")[0] for r in requires} == {"numpy", "opencv-python-headless", "ai-edge-litert"}


def test_stream_url_quotes_credentials_and_uses_the_emulators_forwarded_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pi, "EMULATOR_CACHE", tmp_path)
    state = tmp_path / "state-trixie"
    state.mkdir()
    (state / "port").write_text("2222\n")
    (state / "mjpeg_port").write_text("18080\n")
    (real,) = pi.parse_pi("pi@raspberrypi.local")
    assert pi.stream_url(real, "edge:a/b@c\n", 8080) == "http://edge:a%2Fb%40c@raspberrypi.local:8080/"
    (emulator,) = pi.parse_pi("pi@127.0.0.1:2222")
    assert pi.stream_url(emulator, "edge:tok", 8080) == "http://edge:tok@127.0.0.1:18080/"
    for bad in ("", "edge", "edge:", ":tok"):
        with pytest.raises(ValueError, match="expected one line user:password"):
            pi.stream_url(real, bad, 8080)


def test_imx500_deploy_needs_a_package_folder_and_runs_the_network_on_the_sensor(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing packerOut.zip, network_intrinsics.json, labels.txt"):
        pi.imx500_vars(tmp_path, "")
    for name in pi.IMX500_FILES:
        (tmp_path / name).write_text("x")
    extra = pi.imx500_vars(tmp_path, "--fps 10")
    assert extra == {
        "edge_imx500_package": str(tmp_path),
        "edge_service_extra_args": "--imx500 /opt/edge/imx500/current/network.rpk --fps 10",
    }
