"""``python -m edge.doctor``: is this machine (a Raspberry Pi, its venv) ready to run the edge loop?

Checks, each with a fix hint: Python and TFLite-runtime wheel compatibility, the NumPy/runtime ABI (imports
both and invokes a tiny ADD model built in memory), OpenCV, picamera2 importable from the venv, a camera
present, the CPU governor, the temperature and throttling. Emulated (qemu) hosts are said to be emulated:
functional checks hold there, speed figures do not.

    python -m edge.doctor            # table; exit 1 when a check fails
    python -m edge.doctor --json     # the same as JSON
    python -m edge.doctor --smoke    # only what a deploy needs (Python, runtime, NumPy ABI, OpenCV, edge)
    python -m edge.doctor --emulated # exit 0 when emulated, 1 otherwise
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib
import json
import platform
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge import runtime, system

MIN_PYTHON = (3, 11)
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
HOT_C = 80.0
"""Raspberry Pi firmware soft-throttles at 80 °C (85 °C hard)."""
RUNTIME_HINT = (
    "redeploy (make deploy PI=...), or in the venv: pip install -c <(echo numpy==$(python3 -c 'import numpy; "
    "print(numpy.__version__)')) -r deploy/requirements-pi.txt (ai-edge-litert 2.3.0: linux aarch64 wheels for "
    "CPython 3.10-3.13, Raspberry Pi OS Bookworm and Trixie, 64-bit only)"
)
NUMPY_ABI_MARKERS = ("numpy.dtype size changed", "_ARRAY_API not found", "numpy.core.multiarray failed to import")
"""What an extension module compiled against another NumPy ABI says when it is imported."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One result: ``status`` is ``ok``, ``warn``, ``fail`` or ``skip``; ``hint`` says how to fix it."""

    name: str
    status: str
    detail: str
    hint: str = ""


def load_interpreter_class() -> tuple[type, str]:
    """The TFLite ``Interpreter`` class and its pip distribution, chosen as the runtime chooses it
    (``edge.runtime.interpreter_class``) among the Pi's backends: ai-edge-litert first, then tflite-runtime."""
    interpreter_cls, _, backend = runtime.interpreter_class(runtime.PI_BACKENDS)
    return interpreter_cls, runtime.BACKEND_DISTRIBUTIONS[backend]


def tiny_add_model() -> bytes:
    """A ``.tflite`` flatbuffer with one ADD op: float32 ``(1, 4)`` inputs ``a``, ``b`` -> output ``a + b``.

    Built with the schema bindings ai-edge-litert ships (``ImportError`` without them, e.g. tflite-runtime).
    """
    import flatbuffers  # noqa: PLC0415 - a dependency of the runtime wheels, only needed here
    from ai_edge_litert import schema_py_generated as schema  # noqa: PLC0415

    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    model.operatorCodes = [code]
    model.buffers = [schema.BufferT() for _ in range(4)]
    graph = schema.SubGraphT()
    graph.tensors = []
    for index, name in enumerate(("a", "b", "sum")):
        tensor = schema.TensorT()
        tensor.shape = [1, 4]
        tensor.type = schema.TensorType.FLOAT32
        tensor.buffer = index + 1
        tensor.name = name
        graph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs, op.outputs = [0, 1], [2]
    op.builtinOptionsType = schema.BuiltinOptions.AddOptions
    op.builtinOptions = schema.AddOptionsT()
    graph.operators = [op]
    graph.inputs, graph.outputs = [0, 1], [2]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def check_python() -> Check:
    version = platform.python_version()
    bits = struct.calcsize("P") * 8
    detail = f"Python {version} ({bits}-bit) on {platform.machine()} ({sys.executable})"
    if bits != 64:
        return Check(
            "python",
            "fail",
            detail,
            "a 32-bit (armhf) OS: no LiteRT wheels exist for it; flash the 64-bit Raspberry Pi OS (Trixie or Bookworm)",
        )
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", "fail", detail, "use 64-bit Raspberry Pi OS Trixie (Python 3.13) or Bookworm (3.11)")
    if platform.machine() not in ("aarch64", "arm64", "x86_64", "AMD64"):
        return Check("python", "warn", detail, "install the 64-bit OS: TFLite runtime wheels are aarch64/x86_64")
    return Check("python", "ok", detail)


def check_runtime() -> Check:
    try:
        interpreter, dist = load_interpreter_class()
    except ImportError as exc:
        return Check("tflite runtime", "fail", f"no TFLite runtime importable: {exc}", RUNTIME_HINT)
    from importlib import metadata  # noqa: PLC0415

    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = "?"
    return Check("tflite runtime", "ok", f"{dist} {version} ({interpreter.__module__})")


def check_numpy_abi() -> Check:
    try:
        import numpy as np  # noqa: PLC0415

        interpreter_cls, dist = load_interpreter_class()
    except ImportError as exc:
        return Check("numpy/runtime ABI", "fail", f"import failed: {exc}", RUNTIME_HINT)
    try:
        content = tiny_add_model()
    except ImportError:
        return Check("numpy/runtime ABI", "skip", f"{dist} has no schema bindings to build the test model")
    try:
        interpreter = interpreter_cls(model_content=content)
        interpreter.allocate_tensors()
        a = np.arange(4, dtype=np.float32).reshape(1, 4)
        b = np.full((1, 4), 0.5, dtype=np.float32)
        inputs = interpreter.get_input_details()
        interpreter.set_tensor(inputs[0]["index"], a)
        interpreter.set_tensor(inputs[1]["index"], b)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    except Exception as exc:  # noqa: BLE001 - any failure here is the ABI problem being diagnosed
        return Check(
            "numpy/runtime ABI",
            "fail",
            f"numpy {np.__version__} with {dist}: {type(exc).__name__}: {exc}",
            "the runtime wheel was built for another NumPy major: pin numpy to what the wheel needs "
            "(deploy/requirements-pi.txt) in the venv",
        )
    if not np.allclose(out, a + b):
        return Check("numpy/runtime ABI", "fail", f"ADD gave {out.tolist()}, expected {(a + b).tolist()}", RUNTIME_HINT)
    return Check("numpy/runtime ABI", "ok", f"numpy {np.__version__} + {dist}: tiny ADD model invoked correctly")


def check_opencv() -> Check:
    try:
        import cv2  # noqa: PLC0415
        import numpy as np  # noqa: PLC0415

        small = cv2.resize(np.zeros((8, 8, 3), np.uint8), (4, 4))
    except Exception as exc:  # noqa: BLE001 - import or ABI failure
        return Check("opencv", "fail", f"{type(exc).__name__}: {exc}", "pip install opencv-python-headless in the venv")
    return Check("opencv", "ok", f"cv2 {cv2.__version__}, resize -> {small.shape}")


def check_edge() -> Check:
    try:
        import edge.cli  # noqa: F401, PLC0415
    except Exception as exc:  # noqa: BLE001 - report whatever breaks the import
        return Check("edge package", "fail", f"{type(exc).__name__}: {exc}", "reinstall: make deploy PI=...")
    return Check("edge package", "ok", f"edge from {Path(__file__).resolve().parent}")


REMOVE_VENV_NUMPY = (
    f"{sys.prefix}/bin/pip uninstall -y numpy (the venv then uses python3-numpy), or redeploy: make deploy PI=... "
    "(the deploy never pip-installs NumPy on a Pi)"
)
"""The fix whenever a pip NumPy in this venv hides the OS's."""


def numpy_abi_hint(module: str) -> str:
    """The fix when ``module`` (compiled by the OS against its NumPy) fails to import in this venv."""
    try:
        import numpy as np  # noqa: PLC0415

        where = Path(np.__file__).resolve().parent
    except ImportError:
        return f"sudo apt install --reinstall python3-numpy {module_package(module)}"
    if in_venv(where):
        return (
            f"the venv's pip NumPy {np.__version__} ({where}) hides the OS's NumPy that {module} was built against: "
            f"{REMOVE_VENV_NUMPY}"
        )
    return f"the OS's NumPy {np.__version__} and {module} disagree: sudo apt full-upgrade (both come from apt)"


def module_package(module: str) -> str:
    return {"picamera2": "python3-picamera2", "simplejpeg": "python3-simplejpeg"}.get(module, f"python3-{module}")


def in_venv(path: Path) -> bool:
    """True when ``path`` lies inside this interpreter's venv (not the OS's site-packages)."""
    prefix = Path(sys.prefix).resolve()
    return sys.prefix != sys.base_prefix and (path == prefix or prefix in path.parents)


def check_os_module(module: str) -> Check:
    """Import ``module`` (an apt package: picamera2, simplejpeg) from this venv; the fix names the exact cause."""
    venv_cfg = Path(sys.prefix) / "pyvenv.cfg"
    system_site = True
    if sys.prefix != sys.base_prefix and venv_cfg.is_file():
        system_site = "include-system-site-packages = true" in venv_cfg.read_text().lower()
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or an ABI error from its compiled deps
        message = f"{type(exc).__name__}: {exc}"
        if any(marker in message for marker in NUMPY_ABI_MARKERS):
            return Check(module, "fail", f"not importable from {sys.prefix}: {message}", numpy_abi_hint(module))
        if not system_site:
            hint = f"{venv_cfg} has include-system-site-packages = false: recreate the venv with --system-site-packages"
        else:
            hint = f"sudo apt install {module_package(module)} (Raspberry Pi OS only); the venv already sees system packages"
        return Check(module, "warn", f"not importable from {sys.prefix}: {message}", hint)
    return Check(module, "ok", "importable (system site-packages visible from the venv)")


def check_picamera2() -> Check:
    return check_os_module("picamera2")


def check_simplejpeg() -> Check:
    return check_os_module("simplejpeg")


def check_numpy_source() -> Check:
    """Where NumPy comes from: on a Pi it must be the OS's (apt), which picamera2's compiled modules need."""
    import numpy as np  # noqa: PLC0415

    where = Path(np.__file__).resolve().parent
    os_numpy = Path("/usr/lib/python3/dist-packages/numpy")
    if in_venv(where) and os_numpy.is_dir():
        return Check(
            "numpy source",
            "warn",
            f"numpy {np.__version__} from the venv ({where}) hides the OS's ({os_numpy})",
            REMOVE_VENV_NUMPY,
        )
    origin = "the venv" if in_venv(where) else "the OS"
    return Check("numpy source", "ok", f"numpy {np.__version__} from {origin} ({where})")


def check_camera() -> Check:
    try:
        picamera2 = importlib.import_module("picamera2")
        cameras = picamera2.Picamera2.global_camera_info()
    except Exception:  # noqa: BLE001 - fall back to device nodes
        cameras = None
    if cameras:
        return Check("camera", "ok", f"{len(cameras)} camera(s): {[c.get('Model') for c in cameras]}")
    devices = sorted(glob.glob("/dev/video*"))
    if cameras is None and devices:
        return Check("camera", "ok", f"video devices: {devices[:4]} (picamera2 not available to list cameras)")
    return Check(
        "camera",
        "warn",
        "no camera found",
        "check the ribbon cable (contacts towards the board), camera_auto_detect=1 in /boot/firmware/config.txt, "
        "reboot, then rpicam-hello --list-cameras; or use --source synthetic / a video file",
    )


def check_governor(path: Path = GOVERNOR) -> Check:
    try:
        governor = path.read_text().strip()
    except OSError:
        return Check("cpu governor", "skip", f"{path} not readable (no cpufreq here)")
    if governor != "performance":
        return Check(
            "cpu governor",
            "warn",
            f"{governor}: clocks ramp up under load, latency figures vary",
            "for benchmarks: echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor",
        )
    return Check("cpu governor", "ok", governor)


def check_temperature() -> Check:
    temperature = system.cpu_temperature_c()
    if temperature is None:
        return Check("temperature", "skip", f"{system.THERMAL_ZONE} not readable")
    if temperature >= HOT_C:
        return Check("temperature", "warn", f"{temperature:.1f} °C (throttles at 80)", "add a heatsink or fan")
    return Check("temperature", "ok", f"{temperature:.1f} °C")


def check_throttling() -> Check:
    flags = system.throttling()
    if flags is None:
        return Check("throttling", "skip", "vcgencmd not available (not Raspberry Pi OS)")
    active = [name for name, value in flags.items() if name != "raw" and value]
    if not active:
        return Check("throttling", "ok", f"throttled={flags['raw']:#x}")
    hint = (
        "use the official power supply (5 V 5 A on a Pi 5, 3 A on a Pi 4)"
        if "under_voltage" in " ".join(active)
        else ""
    )
    return Check("throttling", "warn", f"throttled={flags['raw']:#x}: {', '.join(active)}", hint or "improve cooling")


def check_emulation() -> Check:
    if system.is_emulated():
        return Check("emulation", "warn", "emulated (qemu): speed is not Pi speed", "measure speed on a real Pi")
    return Check("emulation", "ok", "native")


SMOKE: list[Callable[[], Check]] = [check_python, check_runtime, check_numpy_abi, check_opencv, check_edge]
ALL: list[Callable[[], Check]] = [
    *SMOKE,
    check_numpy_source,
    check_picamera2,
    check_simplejpeg,
    check_camera,
    check_governor,
    check_temperature,
    check_throttling,
    check_emulation,
]


def run_checks(checks: list[Callable[[], Check]]) -> list[Check]:
    """Run ``checks`` in order; a check that raises becomes a ``fail`` naming the exception."""
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
            results.append(Check(check.__name__.removeprefix("check_"), "fail", f"{type(exc).__name__}: {exc}"))
    return results


def format_table(results: list[Check]) -> str:
    lines = []
    for r in results:
        lines.append(f"[{r.status:>4}] {r.name:<18} {r.detail}")
        if r.hint and r.status in ("warn", "fail"):
            lines.append(f"       {'':<18} fix: {r.hint}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--smoke", action="store_true", help="only the checks a deploy needs")
    parser.add_argument("--emulated", action="store_true", help="exit 0 when emulated (qemu), 1 otherwise")
    args = parser.parse_args(argv)
    if args.emulated:
        emulated = system.is_emulated()
        print("emulated" if emulated else "native")
        return 0 if emulated else 1
    results = run_checks(SMOKE if args.smoke else ALL)
    if args.json:
        payload: dict[str, Any] = {"emulated": system.is_emulated(), "checks": [dataclasses.asdict(r) for r in results]}
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(results))
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
