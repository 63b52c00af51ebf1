"""What the Snakefile can read of a model file at parse time without importing Keras.

:func:`output_count`: the number of scores of a single-output model, from the architecture
saved in the file (``config.json`` of a ``.keras`` archive, the ``model_config`` attribute of
a legacy ``.h5`` file), followed from the output layer back through shape-keeping layers
(activations, dropout) to a layer that sets the width (``Dense``), also into nested models.
Where it cannot tell (a custom layer, several outputs, an unreadable file) it says None, and
the prediction job checks the model as loaded.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

#: Layers whose output has the width of their input.
SHAPE_KEEPING = frozenset(
    {"Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "PReLU", "Dropout", "GaussianNoise", "GaussianDropout",
     "AlphaDropout", "ActivityRegularization", "BatchNormalization", "LayerNormalization", "Identity"}
)  # fmt: skip


def output_count(path: str | os.PathLike) -> int | None:
    """The model's number of output scores, or None where the saved architecture does not tell."""
    try:
        config = _saved_config(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    try:
        return _width(config)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _saved_config(path: str | os.PathLike) -> dict[str, Any]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    import h5py

    with h5py.File(path, "r") as f:
        text = f.attrs["model_config"]
    return json.loads(text.decode() if isinstance(text, bytes) else text)


def _width(model: dict[str, Any]) -> int | None:
    """The output width of a saved model or layer config."""
    kind, config = model["class_name"], model["config"]
    if kind == "Sequential":
        for layer in reversed(config["layers"]):
            if layer["class_name"] not in SHAPE_KEEPING:
                return _width(layer)
        return None
    if kind in ("Functional", "Model"):
        outputs = config["output_layers"]
        if outputs and isinstance(outputs[0], str):  # one output written as [name, node, tensor]
            outputs = [outputs]
        if len(outputs) != 1:
            return None
        layers = {layer["config"]["name"]: layer for layer in config["layers"]}
        return _layer_width(layers, outputs[0][0])
    if kind == "Dense":
        return int(config["units"])
    return None


def _layer_width(layers: dict[str, dict[str, Any]], name: str) -> int | None:
    for _ in range(len(layers)):
        layer = layers[name]
        if layer["class_name"] not in SHAPE_KEEPING:
            return _width(layer)
        name = _inbound(layer)
        if name is None:
            return None
    return None


def _inbound(layer: dict[str, Any]) -> str | None:
    """The name of the one layer that feeds ``layer``, or None."""
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) != 1:
        return None
    args = nodes[0].get("args") if isinstance(nodes[0], dict) else None
    if not args or not isinstance(args[0], dict) or "keras_history" not in args[0].get("config", {}):
        return None
    return args[0]["config"]["keras_history"][0]
