"""The one base class of the runtime's own errors, so a caller catches ``EdgeError`` instead of a tuple.

Each error keeps its historical built-in base too (``ModelLoadError`` is still a ``RuntimeError``,
``MetadataError`` a ``ValueError``), so code that caught those keeps working. Messages are one line that
names the file, device or flag and what was expected: what the command line prints as ``edge: error: ...``.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the edge runtime raises on purpose (model, metadata, source, output, auth)."""
