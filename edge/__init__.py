"""Edge runtime: camera frames -> TFLite SSD -> NumPy decode + NMS -> outputs. NumPy + a TFLite runtime only."""

__all__ = ["Detections", "Detector"]


def __getattr__(name: str):
    # Lazy, so `import edge.anchors` (used by training) does not load the interpreter stack.
    if name in __all__:
        from edge import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
