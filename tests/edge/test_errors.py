"""One base for the runtime's errors: a caller catches ``EdgeError``; old ``except RuntimeError`` still works."""

import pytest

from edge import sources
from edge.auth import AuthError
from edge.errors import EdgeError
from edge.metadata import MetadataError
from edge.outputs import OutputError
from edge.runtime import ModelLoadError, load_interpreter


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ModelLoadError, RuntimeError),
        (MetadataError, ValueError),
        (sources.SourceError, RuntimeError),
        (sources.SourceUnavailable, RuntimeError),
        (OutputError, RuntimeError),
        (AuthError, ValueError),
    ],
)
def test_every_runtime_error_is_an_edge_error_and_keeps_its_builtin_base(error: type, builtin: type) -> None:
    assert issubclass(error, EdgeError) and issubclass(error, builtin)


def test_callers_catch_one_type(tmp_path) -> None:
    raised = []
    for action in (
        lambda: load_interpreter(tmp_path / "missing.tflite"),
        lambda: sources.open_source(str(tmp_path / "nothing-here")),
        lambda: sources.Picamera2Source(lores=(64, 48), lores_format="NV12"),
    ):
        with pytest.raises(EdgeError) as caught:
            action()
        raised.append(type(caught.value))
    assert raised == [ModelLoadError, sources.SourceError, sources.SourceError]
