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


def _spatial_size(layer: keras.layers.Layer) -> tuple[int | None, ...]:
    return tuple(layer.output.shape[1:-1])


def _has_extent(layer: keras.layers.Layer) -> bool:
    """Whether the layer's output has more than one position (a map at a 1x1 layer is one value: constant)."""
    return any(n is None or n > 1 for n in _spatial_size(layer))


#: Layers that pad or crop the border: their map stretched over the image is shifted against it (MobileNetV2's
#: block_13_pad on small inputs, a 2x2 map padded to 3x3 at the bottom and right), so no default layer.
SHIFTING_LAYERS = (
    keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D, keras.layers.Cropping2D, keras.layers.Cropping3D,
)  # fmt: skip


def _default_path(layers: list[keras.layers.Layer], rank: int, prefix: Path = ()) -> Path | None:
    """The last layer in graph order whose output has ``rank`` and more than one position, not a padding or
    cropping layer (:data:`SHIFTING_LAYERS`): a layer of ``layers``, or, where one of them is a sub-model without
    such an output (a classifier wrapped behind a preprocessing layer), the default inside it."""
    found = None
    for layer in layers:
        if isinstance(layer, (keras.layers.InputLayer, *SHIFTING_LAYERS)):
            continue
        if _output_rank(layer) == rank and _has_extent(layer):
            found = (*prefix, layer)
        elif submodel_graph(layer) is not None:
            found = _default_path(sublayers(layer), rank, (*prefix, layer)) or found
    return found


def find_target_path(model: keras.Model, name: str | None = None) -> Path:
    """The path of :func:`find_target_layer`'s layer: the sub-models that hold it, then the layer."""
    rank = len(model.inputs[0].shape)
    paths = list(_walk(model.layers))
    candidates = [path_name(p) for p in paths if _output_rank(p[-1]) == rank and _has_extent(p[-1])]
    if name is None:
        path = _default_path(model.layers, rank)
        if path is None:
            raise ValueError(
                f"model {model.name!r} has no layer with a {rank}D output of more than one position to explain"
            )
        return path
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
    if not _has_extent(path[-1]):
        size = "x".join(str(n) for n in _spatial_size(path[-1]))
        raise ValueError(
            f"layer {name!r} of model {model.name!r} has a {size} output: its map would be one value, the same "
            f"everywhere; choose a layer with a spatial extent: {candidates}"
        )
    return path


def find_target_layer(model: keras.Model, name: str | None = None) -> keras.layers.Layer:
    """The layer named ``name``, or else the last layer whose output has the input's rank and more than one
    position, looking into a sub-model whose own output has not (:func:`_default_path`).

    For 2D images (N, H, W, C) that is the last layer with a 4D output larger than 1x1 (not the 1x1
    convolution of a MobileNet's head); for volumes (N, D, H, W, C) the last with such a 5D output. Padding
    and cropping layers are passed over: their maps, stretched over the image, would be shifted against it.
    ``name`` may be a plain layer name, found in nested sub-models too, or a path such as
    ``inner_model/conv`` for the layer ``conv`` of the sub-model ``inner_model``; a layer of one position
    is refused, its map would be constant.
    """
    return find_target_path(model, name)[-1]
