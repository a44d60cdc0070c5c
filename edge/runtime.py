"""Load a ``.tflite`` model into whichever TFLite runtime is installed.

Backends, tried in this order (``BACKENDS``):

* ``ai_edge_litert`` — ``ai_edge_litert.interpreter`` (LiteRT, the Pi runtime);
* ``tflite_runtime`` — ``tflite_runtime.interpreter`` (the older standalone runtime);
* ``tensorflow`` — ``tensorflow.lite`` (development machines only; imported lazily through
  ``importlib`` so nothing under ``edge/`` depends on TensorFlow).

Every failure becomes a one-line :class:`ModelLoadError` that names the file (or delegate) and
what was expected, so the command line can print it and exit non-zero.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Any

from edge.errors import EdgeError

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_BACKEND_MODULES = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",  # its public ``tf.lite`` (the ``tensorflow.lite`` module path is TF's source tree)
}


BACKEND_DISTRIBUTIONS = {
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
    "tensorflow": "tensorflow",
}
"""The pip distribution that installs each backend (what ``importlib.metadata.version`` takes)."""
PI_BACKENDS: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime")
"""The backends a Pi install may have (the runtime never needs TensorFlow)."""


class ModelLoadError(EdgeError, RuntimeError):
    """A model or delegate could not be loaded; the message is one line naming the file and the cause."""


@dataclasses.dataclass
class LoadedInterpreter:
    """An interpreter with tensors allocated, and where it came from."""

    interpreter: Any
    backend: str
    """One of ``BACKENDS``."""
    model_path: str
    num_threads: int | None
    delegate: str | None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _backend_api(name: str) -> tuple[Any, Any]:
    """``(Interpreter class, load_delegate function)`` of backend ``name``; raises ``ImportError`` if absent."""
    if name not in _BACKEND_MODULES:
        raise ValueError(f"unknown TFLite backend {name!r}; expected one of {', '.join(BACKENDS)}")
    module = importlib.import_module(_BACKEND_MODULES[name])
    if name == "tensorflow":
        return module.lite.Interpreter, module.lite.experimental.load_delegate
    return module.Interpreter, module.load_delegate


def interpreter_class(backends: Sequence[str] | None = None) -> tuple[Any, Any, str]:
    """``(Interpreter class, load_delegate function, backend name)`` of the first of ``backends`` (default
    ``BACKENDS``) that imports: the one place a TFLite runtime is chosen. ``ImportError`` lists every failure."""
    errors = []
    for name in backends or BACKENDS:
        try:
            interpreter_cls, load_delegate = _backend_api(name)
        except ImportError as exc:
            errors.append(f"{name}: {_one_line(exc)}")
            continue
        return interpreter_cls, load_delegate, name
    raise ImportError("; ".join(errors))


def available_backends() -> list[str]:
    """The installed backends, in preference order (checked without importing them)."""
    return [name for name in BACKENDS if importlib.util.find_spec(name) is not None]


def load_interpreter(
    model_path: str | os.PathLike,
    num_threads: int | None = None,
    delegate: str | None = None,
    backends: Sequence[str] | None = None,
) -> LoadedInterpreter:
    """Create an interpreter for ``model_path`` and allocate its tensors.

    Args:
        model_path: a ``.tflite`` file.
        num_threads: CPU threads for the interpreter (``None``: the runtime's default).
        delegate: path or name of a delegate library (e.g. ``libedgetpu.so.1``), or ``None``.
        backends: backends to try, in order (default ``BACKENDS``); the first one that imports is used.

    Raises:
        ModelLoadError: the file is missing or unreadable, is not a valid TFLite model, the delegate
            does not load, or no TFLite runtime is installed.
    """
    path = os.fspath(model_path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path}: model file not found")
    if not os.access(path, os.R_OK):
        raise ModelLoadError(f"{path}: model file is not readable")
    if num_threads is not None and num_threads < 1:
        raise ModelLoadError(f"{path}: num_threads must be >= 1 or None, got {num_threads}")

    try:
        interpreter_cls, load_delegate, name = interpreter_class(backends)
    except ImportError:
        raise ModelLoadError(
            f"{path}: no TFLite runtime installed (tried {', '.join(backends or BACKENDS)}); "
            "install ai-edge-litert or tflite-runtime"
        ) from None

    delegates = None
    if delegate is not None:
        try:
            # dlopen it ourselves first: a library that is not there then fails cleanly, without the runtime's
            # half-built Delegate object (whose __del__ raises "Exception ignored" noise in ai_edge_litert 2.3).
            ctypes.CDLL(delegate)
            delegates = [load_delegate(delegate)]
        except (ValueError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"delegate {delegate!r} could not be loaded for {path}: {_one_line(exc)}") from None
    try:
        interpreter = interpreter_cls(model_path=path, num_threads=num_threads, experimental_delegates=delegates)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: not a valid TFLite model for backend {name} ({_one_line(exc)})") from None
    log.info("loaded %s with %s (threads=%s, delegate=%s)", path, name, num_threads or "default", delegate or "none")
    return LoadedInterpreter(interpreter, name, path, num_threads, delegate)
