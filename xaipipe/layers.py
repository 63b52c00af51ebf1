"""Find the layer whose activations a CAM method weights."""

from __future__ import annotations

import keras


def _output_rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called several times has no single output
        return None


def find_target_layer(model: keras.Model, name: str | None = None) -> keras.layers.Layer:
    """The layer named ``name``, or else the last layer whose output has the input's rank.

    For 2D images (N, H, W, C) that is the last layer with a 4D output; for
    volumes (N, D, H, W, C) the last with a 5D output.
    """
    rank = len(model.inputs[0].shape)
    candidates = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and _output_rank(layer) == rank
    ]
    if name is not None:
        for layer in model.layers:
            if layer.name == name:
                if _output_rank(layer) != rank:
                    raise ValueError(
                        f"layer {name!r} of model {model.name!r} has no {rank}D output; "
                        f"layers that do: {[c.name for c in candidates]}"
                    )
                return layer
        raise ValueError(
            f"layer {name!r} not found in model {model.name!r}; "
            f"layers with a {rank}D output: {[c.name for c in candidates]}"
        )
    if not candidates:
        raise ValueError(f"model {model.name!r} has no layer with a {rank}D output to explain")
    return candidates[-1]
