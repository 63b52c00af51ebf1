"""Find the layer whose activations a CAM method weights, nested sub-models included."""

from __future__ import annotations

from collections.abc import Iterator

import keras

Path = tuple[keras.layers.Layer, ...]


def _output_rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called several times has no single output
        return None


def submodel_graph(layer: keras.layers.Layer) -> keras.Model | None:
    """The functional graph of a nested Functional or (built) Sequential model, else None."""
    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None)
    if isinstance(layer, keras.Model) and hasattr(layer, "_run_through_graph"):
        return layer
    return None


def sublayers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers of a nested Functional or Sequential model (empty for any other layer)."""
    graph = submodel_graph(layer)
    return [] if graph is None else list(graph.layers)


def layer_path(model: keras.Model, layer: keras.layers.Layer) -> Path | None:
    """The chain of (nested) layers from ``model`` down to ``layer``, or None if it is not inside."""
    for candidate in sublayers(model) if submodel_graph(model) is not None else model.layers:
        if candidate is layer:
            return (candidate,)
        inner = layer_path(candidate, layer) if submodel_graph(candidate) is not None else None
        if inner is not None:
            return (candidate, *inner)
    return None


def _walk(layers: list[keras.layers.Layer], prefix: Path = ()) -> Iterator[Path]:
    """Every layer as its path from the outer model, depth first, in graph order."""
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        yield (*prefix, layer)
        yield from _walk(sublayers(layer), (*prefix, layer))


def path_name(path: Path) -> str:
    """``inner_model/conv`` for a layer ``conv`` inside the sub-model ``inner_model``."""
    return "/".join(layer.name for layer in path)


def find_target_path(model: keras.Model, name: str | None = None) -> Path:
    """The path of :func:`find_target_layer`'s layer: the sub-models that hold it, then the layer."""
    rank = len(model.inputs[0].shape)
    top_level = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and _output_rank(layer) == rank
    ]
    if name is None:
        if not top_level:
            raise ValueError(f"model {model.name!r} has no layer with a {rank}D output to explain")
        return (top_level[-1],)
    paths = list(_walk(model.layers))
    candidates = [path_name(p) for p in paths if _output_rank(p[-1]) == rank]
    matches = [p for p in paths if path_name(p) == name] or [p for p in paths if p[-1].name == name]
    if not matches:
        raise ValueError(
            f"layer {name!r} not found in model {model.name!r}; layers with a {rank}D output: {candidates}"
        )
    path = min(matches, key=len)  # a plain name: the outermost such layer, the first of those
    if _output_rank(path[-1]) != rank:
        raise ValueError(
            f"layer {name!r} of model {model.name!r} has no {rank}D output; layers that do: {candidates}"
        )
    return path


def find_target_layer(model: keras.Model, name: str | None = None) -> keras.layers.Layer:
    """The layer named ``name``, or else the last layer whose output has the input's rank.

    For 2D images (N, H, W, C) that is the last layer with a 4D output; for
    volumes (N, D, H, W, C) the last with a 5D output. ``name`` may be a plain
    layer name, found in nested sub-models too, or a path such as
    ``inner_model/conv`` for the layer ``conv`` of the sub-model ``inner_model``.
    """
    return find_target_path(model, name)[-1]
