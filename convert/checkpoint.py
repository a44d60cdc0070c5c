"""Load a trained ``.keras`` checkpoint and check it is this project's detector before converting it."""

from __future__ import annotations

from pathlib import Path

from train.config import ModelConfig


def load_detector(checkpoint: Path, config: ModelConfig):
    """Load a ``.keras`` checkpoint and check it is this project's detector for ``config`` (``ValueError`` if not)."""
    import keras

    from convert.converter import check_detector

    try:
        model = keras.models.load_model(checkpoint, compile=False)
    except Exception as exc:  # any load failure means "not a usable checkpoint"
        raise ValueError(
            f"{checkpoint}: cannot be loaded as a Keras model ({type(exc).__name__}: {exc}); expected a best.keras "
            "written by `python -m train`"
        ) from None
    check_detector(model, config, source=str(checkpoint))
    return model
