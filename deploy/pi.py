"""Drive the Ansible deploy from ``PI=user@host[:port] [user@host2 ...]``: inventory, playbooks, ssh.

    python deploy/pi.py inventory --pi "pi@raspberrypi.local root@127.0.0.1:2222"
    python deploy/pi.py deploy --pi ... --model models/demo_int8.tflite [--mjpeg-port 8080]
    python deploy/pi.py rollback --pi ...
    python deploy/pi.py bench --pi ... [--frames 100]          # results under bench/results/<host>/
    python deploy/pi.py run --pi HOST -- --source synthetic ...  # the camera loop in the foreground, one host
    python deploy/pi.py ssh --pi HOST -- CMD...                  # foreground, one host
    python deploy/pi.py doctor --pi ...
    python deploy/pi.py url --pi ... [--mjpeg-port 8080]         # the camera stream's URL, with its credentials

The emulated Pi (``scripts/pi_emulator.sh``) is recognised by its address and gets its key and its
own known_hosts file; other hosts use the user's ssh setup (agent, ``~/.ssh/config``, known_hosts).

``run`` stops the camera service for the length of a foreground run when it is active (both want the camera
and the MJPEG port) and starts it again afterwards, saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
EMULATOR_CACHE = Path(
    os.environ.get("PI_EMULATOR_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-pi-emulator"
)
"""Where ``scripts/pi_emulator.sh`` keeps its images and, under ``state-<os>/``, each VM's port, key and known_hosts."""
SERVICE = "edge"
CONNECT_TIMEOUT_S = int(os.environ.get("PI_CONNECT_TIMEOUT", "10"))
REMOTE_ROOT = "/opt/edge"
CREDENTIALS = f"{REMOTE_ROOT}/mjpeg.credentials"


@dataclasses.dataclass(frozen=True)
class PiOsRelease:
    """A supported Raspberry Pi OS release (64-bit): its Debian base, CPython and apt's ``python3-numpy``."""

    debian: str
    python: str
    numpy: str


PI_OS_RELEASES: dict[str, PiOsRelease] = {
    "trixie": PiOsRelease(debian="13", python="3.13", numpy="2.2.4"),
    "bookworm": PiOsRelease(debian="12", python="3.11", numpy="1.24.2"),
}
"""What deploy/requirements-pi.txt must install on (tests/deploy/test_requirements_pi.py resolves it for each;
the emulated-Pi tests check each row against the booted OS)."""

RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)"
)


@dataclasses.dataclass(frozen=True)
class Target:
    """One ``user@host[:port]`` entry of ``PI``."""

    user: str | None
    host: str
    port: int

    @property
    def name(self) -> str:
        """Inventory name, also the folder under ``bench/results/``: ``host`` or ``host_port``."""
        return self.host if self.port == 22 else f"{self.host}_{self.port}"

    def ssh_options(self) -> list[str]:
        """ssh ``-o`` options: bounded connect time, batch mode, and the emulator's key/known_hosts."""
        opts = [f"ConnectTimeout={CONNECT_TIMEOUT_S}", "BatchMode=yes", "ServerAliveInterval=15"]
        state = self.emulator_state()
        if state is not None:
            opts += [
                f"IdentityFile={state / 'id_ed25519'}",
                f"UserKnownHostsFile={state / 'known_hosts'}",
                "StrictHostKeyChecking=yes",
            ]
        else:
            opts.append("StrictHostKeyChecking=accept-new")
        return opts

    def emulator_state(self) -> Path | None:
        """The state folder of the emulated Pi whose ssh is forwarded to this loopback port; ``None`` otherwise."""
        if self.host not in ("127.0.0.1", "localhost"):
            return None
        for port_file in sorted(EMULATOR_CACHE.glob("state-*/port")):
            if port_file.read_text().strip() == str(self.port):
                return port_file.parent
        return None

    def is_emulator(self) -> bool:
        return self.emulator_state() is not None


def parse_pi(value: str) -> list[Target]:
    """Parse ``PI`` (space/comma separated ``[user@]host[:port]``) into targets; ``ValueError`` naming the bad entry."""
    targets = []
    for item in re.split(r"[\s,]+", value.strip()):
        if not item:
            continue
        match = re.fullmatch(r"(?:(?P<user>[^@\s]+)@)?(?P<host>[^@:\s]+)(?::(?P<port>\d+))?", item)
        if match is None:
            raise ValueError(f"PI: expected user@host[:port], got {item!r}")
        port = int(match["port"] or 22)
        if not 0 < port < 65536:
            raise ValueError(f"PI: port of {item!r} must be 1..65535")
        targets.append(Target(match["user"], match["host"], port))
    if not targets:
        raise ValueError("PI is empty: expected PI=user@host[:port] (several separated by spaces)")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"PI lists a host twice: {value!r}")
    return targets


def inventory(targets: list[Target]) -> dict:
    """An Ansible YAML/JSON inventory: group ``pis`` with one host per target."""
    hosts = {}
    for t in targets:
        host = {
            "ansible_host": t.host,
            "ansible_port": t.port,
            "ansible_ssh_common_args": " ".join(f"-o {o}" for o in t.ssh_options()),
            "edge_emulator": t.is_emulator(),
        }
        if t.user:
            host["ansible_user"] = t.user
        hosts[t.name] = host
    return {"all": {"children": {"pis": {"hosts": hosts}}}}


def write_inventory(targets: list[Target]) -> Path:
    """The inventory as a new file under ``.cache/deploy/`` (one per run: runs may go on side by side)."""
    folder = ROOT / ".cache" / "deploy"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix="inventory-", suffix=".json", delete=False) as handle:
        json.dump(inventory(targets), handle, indent=2)
    return Path(handle.name)


def ansible_playbook(playbook: str, targets: list[Target], extra: dict) -> int:
    """Run ``deploy/<playbook>`` on all targets in parallel; print a one-line verdict per host. Returns exit status."""
    inv = write_inventory(targets)
    exe = Path(sys.executable).with_name("ansible-playbook")
    if not exe.exists():
        sys.exit(f"deploy: {exe} not found: install requirements/deploy.txt into the venv (pip install -r ...)")
    env = dict(os.environ, ANSIBLE_CONFIG=str(DEPLOY / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    cmd = [str(exe), "-i", str(inv), str(DEPLOY / playbook), "-e", json.dumps(extra), "--forks", str(len(targets))]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=DEPLOY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    recap: dict[str, dict[str, int]] = {}
    unreachable_msgs: dict[str, str] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if m := RECAP.match(line.strip()):
            recap[m["host"]] = {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        if m := re.match(r"fatal: \[(?P<host>[^\]]+)\]: UNREACHABLE! => (?P<rest>.*)", line.strip()):
            unreachable_msgs[m["host"]] = m["rest"]
    status = proc.wait()
    inv.unlink(missing_ok=True)
    elapsed = time.monotonic() - start
    by_name = {t.name: t for t in targets}
    for host, counts in recap.items():
        t = by_name.get(host)
        where = f"{t.host}:{t.port}" if t else host
        if counts["unreachable"]:
            detail = unreachable_msgs.get(host, "")
            msg = json.loads(detail).get("msg", detail) if detail.startswith("{") else detail
            msg = " ".join(msg.split())
            print(
                f"{playbook}: {host}: UNREACHABLE — ssh to {where} failed within {CONNECT_TIMEOUT_S} s "
                f"(host down, wrong port, or no key authorised): {msg}"
            )
        elif counts["failed"]:
            print(f"{playbook}: {host}: FAILED (see the task above); the previous install is left in place")
        elif counts["changed"] == 0:
            print(f"{playbook}: {host}: ok, no changes (already up to date)")
        else:
            print(f"{playbook}: {host}: ok, {counts['changed']} changed")
    print(f"{playbook}: finished in {elapsed:.0f} s, exit status {status}")
    return status


def ssh_command(target: Target, tty: bool = False) -> list[str]:
    """``ssh`` with ``target``'s port and options, up to the destination; append the remote command line."""
    cmd = ["ssh", "-p", str(target.port)]
    for o in target.ssh_options():
        cmd += ["-o", o]
    if tty:
        cmd.append("-t")
    cmd.append(f"{target.user}@{target.host}" if target.user else target.host)
    return cmd


def run_ssh(target: Target, command: list[str], tty: bool = False) -> int:
    """Run ``command`` on ``target`` over ssh, in the foreground; returns its exit status."""
    return subprocess.call([*ssh_command(target, tty), " ".join(shlex.quote(c) for c in command)])


def stream_url(target: Target, credentials: str, mjpeg_port: int) -> str:
    """``http://user:password@host:port/`` of a deployed camera stream; the emulator's port is its forwarded one.

    ``credentials`` is the ``user:password`` line of the Pi's ``mjpeg.credentials`` (``ValueError`` otherwise).
    """
    user, sep, password = credentials.strip().partition(":")
    if not (user and sep and password):
        raise ValueError(f"{CREDENTIALS} on {target.name}: expected one line user:password")
    host, port = target.host, mjpeg_port
    state = target.emulator_state()
    if state is not None and (state / "mjpeg_port").is_file():
        port = int((state / "mjpeg_port").read_text())
    quote = urllib.parse.quote
    return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/"


def remote_run_script(args: list[str]) -> str:
    """The remote shell line of ``pi-run``: the deployed loop on the current model, ``EDGE_EMULATED`` set under qemu.

    When the camera service is active it holds the camera (and the MJPEG port): it is stopped for the run, with
    a message, and started again when the run ends, whatever its exit status. Without passwordless sudo the run
    is refused with the command to stop the service by hand.
    """
    python = f"{REMOTE_ROOT}/current/venv/bin/python"
    run = [python, "-m", "edge", "run", "--model", f"{REMOTE_ROOT}/models/current.tflite", *args]
    unit = f"{SERVICE}.service"
    return (
        f"test -x {python} || {{ echo 'nothing deployed at {REMOTE_ROOT}: run make deploy first' >&2; exit 3; }}; "
        "held=0; "
        f"if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet {unit}; then "
        f"sudo -n systemctl stop {unit} || {{ echo '{unit} has the camera and it could not be stopped "
        f"(sudo needs a password): sudo systemctl stop {unit}, run again, then sudo systemctl start {unit}' >&2; "
        "exit 4; }; "
        f"held=1; echo 'pi-run: {unit} had the camera: stopped for this run, restarted when it ends' >&2; fi; "
        f"trap 'if [ $held = 1 ]; then sudo -n systemctl start {unit} && echo \"pi-run: {unit} started again\" >&2; fi' EXIT; "
        "trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP; "
        f"cd {REMOTE_ROOT} && EDGE_EMULATED=$({python} -m edge.doctor --emulated >/dev/null && echo 1 || echo 0) "
        f"{' '.join(shlex.quote(a) for a in run)}"
    )


IMX500_FILES = ("packerOut.zip", "network_intrinsics.json", "labels.txt")
"""What ``python -m convert RUN --target imx500 --out DIR`` writes and ``make deploy TARGET=imx500`` copies."""


def imx500_vars(package: Path, service_args: str) -> dict:
    """Extra variables of an IMX500 deploy: the package folder, and the service running the network on the sensor.

    Raises ``ValueError`` naming the folder and the missing files when ``package`` is not a conversion's output.
    """
    missing = [name for name in IMX500_FILES if not (package / name).is_file()]
    if missing:
        raise ValueError(
            f"MODEL={package}: not an IMX500 package folder (missing {', '.join(missing)}); make convert-imx500 "
            "writes one"
        )
    network = f"{REMOTE_ROOT}/imx500/current/network.rpk"
    return {
        "edge_imx500_package": str(package),
        "edge_service_extra_args": f"--imx500 {network} {service_args}".strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog="run/ssh/doctor: -- ARGS"
    )
    parser.add_argument("command", choices=["inventory", "deploy", "rollback", "bench", "doctor", "url", "run", "ssh"])
    parser.add_argument("--pi", default=os.environ.get("PI", ""), help="user@host[:port], several separated by spaces")
    parser.add_argument("--model", default="models/demo_int8.tflite", help="model file to deploy")
    parser.add_argument(
        "--target", default="tflite", choices=["tflite", "imx500"], help="imx500: MODEL is a convert-imx500 folder"
    )
    parser.add_argument("--mjpeg-host", default="0.0.0.0", help="address the camera service's stream binds to")
    parser.add_argument("--mjpeg-port", type=int, default=8080, help="MJPEG port of the camera service")
    parser.add_argument("--frames", type=int, default=100, help="bench: frames of the synthetic run")
    parser.add_argument("--source", default="picamera2", help="camera source of the service")
    parser.add_argument("--service-args", default="", help="more `python -m edge run` flags for the service")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"), help="bench: where reports go")
    argv = list(sys.argv[1:] if argv is None else argv)
    remote = argv[argv.index("--") + 1 :] if "--" in argv else []
    ns = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        targets = parse_pi(ns.pi)
    except ValueError as exc:
        parser.error(str(exc))
    if ns.command == "inventory":
        print(json.dumps(inventory(targets), indent=2))
        return 0
    if ns.command == "deploy":
        model = Path(ns.model).resolve()
        if ns.target == "tflite" and not model.is_file():
            parser.error(f"MODEL={ns.model}: no such file (build one with the convert stage or pass MODEL=...)")
        extra = {"edge_repo": str(ROOT), "edge_model": str(model), "edge_mjpeg_port": ns.mjpeg_port}
        extra["edge_source"] = ns.source
        extra["edge_mjpeg_host"] = ns.mjpeg_host
        extra["edge_service_extra_args"] = ns.service_args
        if ns.target == "imx500":
            try:
                extra.update(imx500_vars(model, ns.service_args))
            except ValueError as exc:
                parser.error(str(exc))
        return ansible_playbook("site.yml", targets, extra)
    if ns.command == "rollback":
        return ansible_playbook("rollback.yml", targets, {})
    if ns.command == "bench":
        results = str(Path(ns.results).resolve())
        return ansible_playbook("bench.yml", targets, {"edge_frames": ns.frames, "edge_results": results})
    if ns.command == "doctor":
        status = 0
        for t in targets:
            print(f"== doctor on {t.name}")
            status |= run_ssh(t, [f"{REMOTE_ROOT}/current/venv/bin/python", "-m", "edge.doctor", *remote])
        return status
    if ns.command == "url":
        status = 0
        for t in targets:
            read = subprocess.run(
                [*ssh_command(t), f"cat {CREDENTIALS} 2>/dev/null || sudo -n cat {CREDENTIALS}"],
                capture_output=True,
                text=True,
                timeout=CONNECT_TIMEOUT_S + 60,
            )
            if read.returncode != 0:
                print(f"url: {t.name}: cannot read {CREDENTIALS} (deployed? make deploy PI=...): {read.stderr.strip()}")
                status = 1
                continue
            try:
                print(stream_url(t, read.stdout, ns.mjpeg_port))
            except ValueError as exc:
                print(f"url: {exc}")
                status = 1
        return status
    if len(targets) != 1:
        parser.error(f"{ns.command} runs in the foreground on one host: give PI a single user@host[:port]")
    if ns.command == "run":
        return run_ssh(targets[0], ["sh", "-c", remote_run_script(remote)], tty=sys.stdin.isatty())
    return run_ssh(targets[0], remote or ["bash", "-l"], tty=sys.stdin.isatty())


if __name__ == "__main__":
    sys.exit(main())
