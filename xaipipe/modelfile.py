"""What the Snakefile can read of a model file at parse time without importing Keras.

:func:`output_count`: the number of scores of a single-output model, from the architecture
saved in the file (``config.json`` of a ``.keras`` archive, the ``model_config`` attribute of
a legacy ``.h5`` file), followed from the output layer back through shape-keeping layers
(activations, dropout) to a layer that sets the width (``Dense``), also into nested models.
Where it cannot tell (a custom layer, several outputs, an unreadable file) it says None, and
the prediction job checks the model as loaded.

:func:`saved_layers`: the model's input shape and every layer's path and output shape, so that a
CAM method's ``layer`` that is not in the model, a model without a spatial layer to explain and an
input shape that preprocessing does not give stop the run before any job (:func:`layer_problem`,
:func:`input_problem`), as the jobs would stop on the loaded model (:mod:`xaipipe.layers`,
:func:`xaipipe.model.check_model_input`).
"""

from __future__ import annotations

import difflib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
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


Shape = tuple[int | None, ...]
#: The classes of a saved nested model whose layers Keras's loaded model shows (:func:`xaipipe.layers.sublayers`).
CONTAINERS = frozenset({"Functional", "Sequential", "Model"})


@dataclass(frozen=True)
class SavedLayers:
    """What a model file's saved architecture tells of its layers, without loading it.

    ``input_shape``: the one input's shape without the batch axis (None: several inputs, or not told);
    ``shapes``: every layer's path (``backbone/conv1`` inside the nested model ``backbone``; no input layers),
    in graph order, to its output shape without the batch axis (of its first call where it is called more than
    once, as Keras gives it; None where the file does not tell: a legacy ``.h5`` file's graph);
    ``complete``: every layer is one of Keras's own,
    so these are all the layers the loaded model has (a custom layer or model may hold others).
    """

    input_shape: Shape | None
    shapes: dict[str, Shape | None]
    complete: bool


def saved_layers(path: str | os.PathLike) -> SavedLayers | None:
    """The :class:`SavedLayers` of a model file, or None where it cannot be read."""
    try:
        model = _saved_config(path)
        shapes: dict[str, Shape | None] = {}
        # the output of a model xaipipe explains: (batch, classes) (xaipipe.model.check_supported)
        try:
            width = _width(model)
        except (KeyError, IndexError, TypeError, ValueError):
            width = None
        complete = _collect(model, (), (width,), shapes)
        return SavedLayers(_input_shape(model), shapes, complete)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, zipfile.BadZipFile):
        return None


def _name(entry: dict[str, Any]) -> str:
    return str(entry["config"]["name"])


def _keras_own(entry: dict[str, Any]) -> bool:
    """Whether a layer's entry is a Keras class (a ``.keras`` file says so in ``module``; a legacy ``.h5``
    file does not, so none of its layers counts as known)."""
    return str(entry.get("module") or "").split(".")[0] == "keras"


def _shape(value: Any) -> Shape | None:
    if not isinstance(value, list | tuple) or not value:
        return None
    return tuple(None if n is None else int(n) for n in value[1:])


def _collect(entry: dict[str, Any], prefix: tuple[str, ...], output: Shape | None,
             shapes: dict[str, Shape | None]) -> bool:  # fmt: skip
    """Add the layers of the saved model ``entry`` (whose own output shape is ``output``) to ``shapes``;
    whether every one of them is Keras's own."""
    kind, config = entry["class_name"], entry["config"]
    layers = [layer for layer in config["layers"] if layer["class_name"] != "InputLayer"]
    complete = _keras_own(entry) or not prefix  # the outer model's own class does not hide layers
    if kind == "Sequential":  # each layer's output is the next one's input
        inputs = [_shape((layer.get("build_config") or {}).get("input_shape")) for layer in layers]
        outputs = [*inputs[1:], output]
    else:
        produced = _produced_shapes(layers)
        last = _output_names(config)
        outputs = [produced.get(_name(layer)) or (output if [_name(layer)] == last else None) for layer in layers]
    for layer, shape in zip(layers, outputs, strict=True):
        path = (*prefix, _name(layer))
        shapes["/".join(path)] = shape
        complete = complete and _keras_own(layer)
        if layer["class_name"] in CONTAINERS and isinstance(layer["config"].get("layers"), list):
            complete = _collect(layer, path, shape, shapes) and complete
    return complete


def _tensors(value: Any) -> Iterator[dict[str, Any]]:
    """Every saved Keras tensor (``__keras_tensor__``: shape and producing layer) inside a node's arguments."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            yield value["config"]
        else:
            for item in value.values():
                yield from _tensors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _tensors(item)


def _produced_shapes(layers: list[dict[str, Any]]) -> dict[str, Shape | None]:
    """Layer name -> the shape of its output as the layers that take it saw it: of its first call (node 0),
    which is the output Keras gives a layer called more than once."""
    produced: dict[str, Shape | None] = {}
    for layer in layers:
        for tensor in _tensors(layer.get("inbound_nodes") or []):
            name, node = tensor["keras_history"][:2]
            if node == 0:
                produced[name] = _shape(tensor.get("shape"))
    return produced


def _output_names(config: dict[str, Any]) -> list[str]:
    outputs = config.get("output_layers") or []
    if outputs and isinstance(outputs[0], str):  # one output written as [name, node, tensor]
        outputs = [outputs]
    return [str(output[0]) for output in outputs]


def _input_shape(model: dict[str, Any]) -> Shape | None:
    config = model["config"]
    layers = config["layers"]
    if model["class_name"] == "Sequential":
        first = layers[0]["config"] if layers else {}
        return _shape(first.get("batch_shape") or first.get("batch_input_shape") or config.get("build_input_shape"))
    inputs = config.get("input_layers") or []
    if inputs and isinstance(inputs[0], str):
        inputs = [inputs]
    if len(inputs) != 1:
        return None
    layer = next(layer["config"] for layer in layers if _name(layer) == inputs[0][0])
    return _shape(layer.get("batch_shape") or layer.get("batch_input_shape"))


def input_problem(model_path: str | os.PathLike, expected: Shape, given: Shape) -> str | None:
    """Why a model taking inputs of shape ``expected`` cannot take preprocessing's ``given`` (None: it can)."""
    given = tuple(int(n) for n in given)
    if tuple(expected) == given:
        return None
    spatial, channels = list(expected[:-1]), expected[-1]
    return (
        f"model {model_path} takes inputs of shape {tuple(expected)}, but preprocessing gives {given} "
        f"(preprocessing.size {list(given[:-1])}, preprocessing.channels {given[-1]}); "
        f"set preprocessing.size: {spatial} and preprocessing.channels: {channels}"
    )


def _has_extent(shape: Shape) -> bool:
    return any(n is None or n > 1 for n in shape[:-1])


def layer_problem(saved: SavedLayers, layer: str | None, model_path: str | os.PathLike) -> str | None:
    """Why a CAM method cannot explain ``layer`` (None: the automatic choice) of the saved model, where the file
    tells for certain (None where it can, or where it cannot tell): the rules of
    :func:`xaipipe.layers.find_target_path`, on the saved layers."""
    if saved.input_shape is None:
        return None
    rank = len(saved.input_shape) + 1
    known = {path: shape for path, shape in saved.shapes.items() if shape is not None}
    candidates = [path for path, shape in known.items() if len(shape) + 1 == rank and _has_extent(shape)]
    if layer is None:
        if candidates or not saved.complete or len(known) < len(saved.shapes):
            return None
        return (
            f"model {model_path} has no layer with a {rank}D output of more than one position to explain, which a "
            "CAM method needs; explain it with a method that reads the input (saliency, integratedgradients, "
            "occlusion, ...)"
        )
    matches = [p for p in saved.shapes if p == layer] or [p for p in saved.shapes if p.split("/")[-1] == layer]
    if not matches:
        if not saved.complete:
            return None
        names = dict.fromkeys([p.split("/")[-1] for p in candidates] + candidates)
        close = difflib.get_close_matches(layer, list(names), n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        shown = candidates if len(candidates) <= 12 else [*candidates[:3], "...", *candidates[-8:]]
        return (
            f"layer {layer!r} not found in model {model_path}; {hint}layers with a {rank}D output "
            f"({len(candidates)}): {', '.join(shown)}"
        )
    path = min(matches, key=lambda p: p.count("/"))  # a plain name: the outermost such layer, the first of those
    shape = saved.shapes[path]
    if shape is None:
        return None
    if len(shape) + 1 != rank:
        return f"layer {layer!r} of model {model_path} has no {rank}D output; layers that do: {candidates[-12:]}"
    if not _has_extent(shape):
        size = "x".join(str(n) for n in shape[:-1])
        return (
            f"layer {layer!r} of model {model_path} has a {size} output: its map would be one value, the same "
            f"everywhere; choose a layer with a spatial extent: {candidates[-12:]}"
        )
    return None


def _head(path: str | os.PathLike) -> tuple[str, str, str | None] | None:
    """(name, class name, activation) of the layer that makes the model's one output, seen through linear
    ``Activation`` layers (a mixed-precision head's float32 cast passes its input's scores on); None where the
    file does not tell (several outputs, no readable architecture)."""
    try:
        model = _saved_config(path)
        kind, config = model["class_name"], model["config"]
        layers = [layer for layer in config["layers"] if layer["class_name"] != "InputLayer"]
        if kind == "Sequential":
            position = len(layers) - 1
        else:
            names = _output_names(config)
            if len(names) != 1:
                return None
            position = next(k for k, layer in enumerate(layers) if _name(layer) == names[0])
        by_name = {_name(layer): k for k, layer in enumerate(layers)}
        for _ in range(len(layers)):
            last = layers[position]
            activation = last.get("config", {}).get("activation")
            if last["class_name"] != "Activation" or activation != "linear":
                break
            before = position - 1 if kind == "Sequential" else by_name.get(_inbound(last) or "", -1)
            if before < 0:
                return None
            position = before
        return _name(last), last["class_name"], activation if isinstance(activation, str) else None
    except (OSError, ValueError, KeyError, IndexError, TypeError, StopIteration, zipfile.BadZipFile):
        return None


def linear_head(path: str | os.PathLike) -> str | None:
    """The name of the model's output layer where the saved architecture shows that it ends without a squashing
    activation (a ``Dense`` or ``Activation`` layer with activation ``linear``: its outputs are raw scores, logits,
    not probabilities), else None (a softmax or sigmoid, or a head the file does not tell)."""
    head = _head(path)
    return head[0] if head is not None and head[1] == "Dense" and head[2] == "linear" else None


def multi_label_head(path: str | os.PathLike) -> str | None:
    """The name of the model's output layer where the saved architecture shows several sigmoid outputs (a
    multi-label model: each output a finding of its own, present or not), else None."""
    head = _head(path)
    if head is None or head[2] != "sigmoid" or head[1] not in ("Dense", "Activation"):
        return None
    n_outputs = output_count(path)
    return head[0] if n_outputs is not None and n_outputs > 1 else None
