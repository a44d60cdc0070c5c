"""Backbone weights from files: Keras' ImageNet MobileNet v1, a ``.keras`` model, or an ``.h5`` / ``.weights.h5`` file.

``load_backbone_weights(model, alpha, spec)`` copies weights into the layers of a ``train.model.build_ssd`` model
that have the same name and shapes (``build_ssd`` reuses ``keras.applications.MobileNet``'s layer names).
``spec`` is ``"none"``, ``"imagenet"`` (alpha in ``IMAGENET_ALPHAS``) or a path; ``check_weights_spec`` rejects an
unusable one before anything is built.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import keras
import numpy as np

logger = logging.getLogger(__name__)

IMAGENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)
"""Width multipliers for which Keras publishes ImageNet MobileNet v1 weights."""


def _imagenet_filename(alpha: float) -> str:
    alpha_text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}[alpha]
    return f"mobilenet_{alpha_text}_224_tf_no_top.h5"


def _check_imagenet_alpha(alpha: float) -> None:
    if alpha not in IMAGENET_ALPHAS:
        raise ValueError(
            f"backbone_weights='imagenet': ImageNet MobileNet v1 weights exist only for alpha in "
            f"{list(IMAGENET_ALPHAS)}, got alpha={alpha}; use backbone_weights='none' or a PATH"
        )


def _imagenet_backbone(alpha: float) -> keras.Model:
    _check_imagenet_alpha(alpha)
    try:
        return keras.applications.MobileNet(
            input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights="imagenet"
        )
    except Exception as error:
        filename = _imagenet_filename(alpha)
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / filename
        raise RuntimeError(
            f"backbone_weights='imagenet': could not download the Keras ImageNet MobileNet weights "
            f"{filename} ({type(error).__name__}: {error}); this machine looks offline. Copy the file to "
            f"{cache} (the Keras cache) or pass it with --backbone-weights PATH."
        ) from error


def _snake_case(name: str) -> str:
    """``Conv2D`` -> ``conv2d``, ``BatchNormalization`` -> ``batch_normalization``: how Keras 3 names layer
    groups in ``.weights.h5`` files (the rule of its ``naming.to_snake_case``, which is not public API)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras3_weight_paths(model: keras.Model) -> dict[str, str]:
    """Map the ``layers/<path>`` keys Keras 3 writes in ``.weights.h5`` files to ``model``'s layer names.

    Keras 3 addresses layers by snake-cased class name plus a per-class counter in ``model.layers``
    order (``conv2d``, ``conv2d_1``, ...), not by layer name; models that share the MobileNet layer
    order (any ``build_ssd`` model, ``keras.applications.MobileNet``) therefore share these paths.
    """
    used: dict[str, int] = {}
    paths = {}
    for layer in model.layers:
        name = _snake_case(layer.__class__.__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        paths[name] = layer.name
    return paths


def _h5_layer_weights(path: Path, model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Per-layer-name weight arrays from a legacy Keras ``.h5`` file or a Keras 3 ``.weights.h5`` file."""
    import h5py

    def text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    weights: dict[str, list[np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        root = f.get("model_weights", f)
        if "layer_names" in root.attrs:  # legacy format (e.g. keras.applications downloads)
            for layer_name in map(text, root.attrs["layer_names"]):
                group = root[layer_name]
                names = [text(n) for n in group.attrs.get("weight_names", [])]
                if names:
                    weights[layer_name] = [np.asarray(group[n]) for n in names]
            return weights
        if "layers" not in root:
            raise ValueError(f"{path}: not a Keras weights file (no 'layer_names' attribute and no 'layers' group)")
        layer_names = _keras3_weight_paths(model)
        for key, group in root["layers"].items():
            if key in layer_names and "vars" in group and len(group["vars"]):
                variables = group["vars"]
                weights[layer_names[key]] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return weights


def check_weights_spec(alpha: float, backbone_weights: str | None) -> None:
    """Fail fast (before building) on an unusable ``backbone_weights`` value."""
    if backbone_weights in (None, "", "none"):
        return
    if backbone_weights == "imagenet":
        _check_imagenet_alpha(alpha)
        return
    path = Path(backbone_weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone_weights: {str(backbone_weights)!r} is neither 'none', 'imagenet' nor an existing "
            f".keras/.weights.h5/.h5 file"
        )
    if path.suffix not in (".keras", ".h5"):
        raise ValueError(
            f"backbone_weights: {str(backbone_weights)!r} must end in .keras, .weights.h5 or .h5, got {path.suffix!r}"
        )


def _source_weights(source: str, model: keras.Model) -> dict[str, list[np.ndarray]]:
    path = Path(source)
    if path.suffix == ".keras":
        source_model = keras.models.load_model(path, compile=False)
        return {layer.name: layer.get_weights() for layer in source_model.layers if layer.weights}
    return _h5_layer_weights(path, model)


def copy_weights_by_name(model: keras.Model, weights: dict[str, list[np.ndarray]], origin: str) -> int:
    """Copy ``weights`` (layer name -> arrays) into same-named layers of ``model`` whose shapes match.

    Returns the number of layers loaded; raises ``ValueError`` naming ``origin`` if none matched.
    Layers with the same name but different shapes (e.g. another alpha) are skipped with a warning.
    """
    loaded, mismatched = 0, []
    for layer in model.layers:
        arrays = weights.get(layer.name)
        if not arrays or not layer.weights:
            continue
        target = [tuple(w.shape) for w in layer.weights]
        if [tuple(a.shape) for a in arrays] != target:
            mismatched.append(layer.name)
            continue
        layer.set_weights(arrays)
        loaded += 1
    if mismatched:
        logger.warning("%s: %d layers skipped, shapes differ (e.g. %s)", origin, len(mismatched), mismatched[:3])
    if loaded == 0:
        raise ValueError(
            f"{origin}: no layer matched the model by name and shape "
            f"(file has {len(weights)} layers with weights, e.g. {sorted(weights)[:5]})"
        )
    logger.info("%s: loaded weights into %d layers", origin, loaded)
    return loaded


def load_backbone_weights(model: keras.Model, alpha: float, backbone_weights: str) -> int:
    """Apply ``backbone_weights`` (``"none"`` | ``"imagenet"`` | PATH) to ``model``; returns layers loaded."""
    check_weights_spec(alpha, backbone_weights)
    if backbone_weights in (None, "", "none"):
        return 0
    if backbone_weights == "imagenet":
        source = _imagenet_backbone(alpha)
        weights = {layer.name: layer.get_weights() for layer in source.layers if layer.weights}
        return copy_weights_by_name(model, weights, f"ImageNet MobileNet alpha={alpha}")
    return copy_weights_by_name(model, _source_weights(backbone_weights, model), str(backbone_weights))
