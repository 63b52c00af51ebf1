"""The backend-neutral part of the differentiation: the score tensor and the graph replay.

The forward pass is replayed operation by operation over the model's
functional graph (recursing into nested Functional or Sequential sub-models).
That lets a method read, or shift, the activations of any layer, nested ones
included, and lets guided backpropagation change the gradient of every ReLU,
all without touching the user's model: its layers, weights and activations are
only called. The one backend-specific piece used here is the guided gate,
which a backend module passes in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import keras
import numpy as np

from xaipipe.layers import submodel_graph
from xaipipe.methods import SCORES  # the registry owns the score names

#: Final activations taken off for ``score: logits`` (their input is the logits); log_softmax gives log p.
_SQUASHING = ("softmax", "sigmoid", "log_softmax")
#: Layers after which the class scores are those of their input (reshaped, pooled or passed on):
#: a head that ends in one of them holds logits where its input does.
_PASS_THROUGH = (
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Dropout,
    keras.layers.Identity,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)

Path = tuple[keras.layers.Layer, ...]


def _activation_name(layer: keras.layers.Layer) -> str | None:
    """The name of a layer's Keras activation; ``"?"`` for a function Keras does not know (e.g. ``tf.nn.softmax``)."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = keras.activations.serialize(activation)
    return name if isinstance(name, str) else "?"


def _producer(tensor: keras.KerasTensor) -> tuple[Any, list]:
    """(the layer or operation that made ``tensor`` in its graph, that call's input tensors)."""
    history = tensor._keras_history
    operation = history.operation
    return operation, list(operation._inbound_nodes[history.node_index].input_tensors)


def _squash(operation: Any, rank: int) -> str | None:
    """``softmax`` or ``sigmoid`` where ``operation`` applies it over the class axis (the last), else None."""
    op_name = type(operation).__name__ if not isinstance(operation, keras.layers.Layer) else None
    if isinstance(operation, keras.layers.Softmax) or op_name in ("Softmax", "LogSoftmax"):  # keras.ops too
        kind = "log_softmax" if op_name == "LogSoftmax" else "softmax"
        axis = operation.axis
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        return kind if len(axes) == 1 and axes[0] in (-1, rank - 1) else f"{kind} over another axis"
    if type(operation).__name__ == "Sigmoid" and not isinstance(operation, keras.layers.Layer):  # keras.ops.sigmoid
        return "sigmoid"
    if isinstance(operation, keras.layers.Layer) and _activation_name(operation) in _SQUASHING:
        return _activation_name(operation)
    return None


def _describe(operation: Any, prefix: str) -> str:
    kind = "layer" if isinstance(operation, keras.layers.Layer) else "operation"
    return f"{kind} {prefix + operation.name!r}"


class _Unsquashed(keras.layers.Layer):
    """``layer`` with a linear activation in place of its softmax or sigmoid: a linear copy of it,
    called on ``layer``'s own variables (``stateless_call``), read at each call, so that the scores
    follow the user's weights when they change after a method was built (the copy's weights are unused)."""

    def __init__(self, layer: keras.layers.Layer):
        super().__init__(name=f"{layer.name}_logits")
        self.layer = layer
        self.linear = layer.__class__.from_config({**layer.get_config(), "activation": "linear"})

    def build(self, input_shape: Any) -> None:
        self.linear.build(input_shape)

    def call(self, inputs: Any) -> Any:
        outputs, _ = self.linear.stateless_call(
            self.layer.trainable_variables, self.layer.non_trainable_variables, inputs
        )
        return outputs


class _Refused(ValueError):
    """A head whose scores before a softmax or sigmoid cannot be found."""


def _logits(tensor: keras.KerasTensor, prefix: str = "") -> tuple[keras.KerasTensor, str, str | None, dict]:
    """(the scores before any final softmax or sigmoid of ``tensor``, in its graph; where they come from;
    the squashing taken off (None: the output is the logits); nested sub-models replaced, by id, with their copies).

    Raises :class:`_Refused` for a head that cannot be seen through.
    """
    operation, inputs = _producer(tensor)
    where = _describe(operation, prefix)
    if isinstance(operation, keras.layers.InputLayer):
        return tensor, f"output of {where}", None, {}
    squash = _squash(operation, len(tensor.shape))
    if squash is not None:
        if squash not in _SQUASHING or len(inputs) != 1:
            raise _Refused(f"the final {where} applies a {squash} xaipipe cannot take off")
        if isinstance(operation, (keras.layers.Activation, keras.layers.Softmax)) or not isinstance(
            operation, keras.layers.Layer
        ):
            return inputs[0], f"input of {where} ({squash})", squash, {}
        # a layer with a squashing activation: its linear copy on its own variables (the user's layer is untouched)
        return _Unsquashed(operation)(inputs[0]), f"{where} without its {squash}", squash, {}
    inner = submodel_graph(operation) if isinstance(operation, keras.layers.Layer) else None
    if inner is not None:
        if len(inner.outputs) != 1 or len(inner.inputs) != 1 or len(inputs) != 1:
            raise _Refused(f"the final {where} is a sub-model with several inputs or outputs")
        inner_logits, source, squash, substitutes = _logits(inner.outputs[0], f"{prefix}{operation.name}/")
        if squash is None:
            return tensor, source, None, {}
        copy = keras.Model(inner.inputs, inner_logits, name=f"{operation.name}_logits")
        return copy(inputs[0]), source, squash, {**substitutes, id(operation): copy}
    if isinstance(operation, keras.layers.Activation) and _activation_name(operation) == "linear" and len(inputs) == 1:
        return _logits(inputs[0], prefix)  # the identity (a mixed-precision head's float32 cast): its input's scores
    if isinstance(operation, _PASS_THROUGH) and len(inputs) == 1:
        _, source, squash, _ = _logits(inputs[0], prefix)
        if squash is not None:
            raise _Refused(f"a {squash} ({source}) comes before the final {where}")
        return tensor, f"output of {where}", None, {}
    if isinstance(operation, keras.layers.Layer) and _activation_name(operation) not in (None, "?"):
        return tensor, f"output of {where} (no softmax or sigmoid)", None, {}  # e.g. a Dense without them
    raise _Refused(f"the final {where} ({type(operation).__name__}) may apply a softmax or sigmoid xaipipe cannot see")


def _binary(scores: Any, score: str) -> Any:
    """The two class scores of a one-unit sigmoid model: [-z, z] (logits) or [1 - p, p] (probabilities)."""
    if score == "logits":
        return keras.ops.concatenate([-scores, scores], axis=-1)
    return keras.ops.concatenate([1.0 - scores, scores], axis=-1)


@dataclass(frozen=True)
class ScoreSource:
    """The class scores a method differentiates, and where they come from.

    ``tensor``: the (batch, K) scores in float32; ``description``: which tensor
    that is, recorded in every heatmaps file (``score_tensor``); ``substitutes``:
    the nested sub-models that the scores' graph replaces (by ``id``) with copies
    without their final squashing, so that a layer path into them can be followed.
    """

    tensor: keras.KerasTensor
    description: str
    substitutes: Mapping[int, keras.Model]

    def graph_path(self, path: Path) -> Path:
        """A path of nested layers of the user's model, as it runs in the scores' graph."""
        return tuple(self.substitutes.get(id(layer), layer) for layer in path)


def score_source(model: keras.Model, score: str = "logits") -> ScoreSource:
    """The symbolic class scores of ``model`` and where they come from; the user's model is not modified.

    ``logits`` (as in the Grad-CAM paper) are the scores before a final softmax or
    sigmoid, found in every form Keras shows: an Activation or Softmax layer (its
    input), a layer with ``activation="softmax"`` or ``"sigmoid"`` (a linear copy of
    it that reads the layer's variables at each call, :class:`_Unsquashed`), ``keras.ops.softmax``
    or ``keras.ops.sigmoid`` in a functional graph (its input), a nested Functional or Sequential model ending in one of these (a copy
    of it ending before it). A final Flatten, Reshape, Dropout or global pooling
    layer passes its input's scores on (a softmax before it is refused). A head that may squash in a way Keras does not show (a Lambda,
    a custom layer) is refused with a ValueError asking for ``score: probabilities``.
    ``probabilities``: the model's output as it is.

    A one-unit model ending in a sigmoid is a two-class model: class 1 is its logit
    z (probability p), class 0 the other side, -z (1 - p); so argmax explains the
    predicted side. A one-unit output without a sigmoid is one score (class 0).
    The scores are cast to float32 whatever the model's dtype.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    outputs = model.outputs  # of the graph, for Functional and built Sequential models alike
    if len(outputs) != 1:
        raise ValueError(f"model {model.name!r} has several outputs; xaipipe explains single-output classifiers")
    output = outputs[0]
    try:
        logits, source, squash, substitutes = _logits(output)
    except _Refused as refused:
        if score == "logits" or output.shape[-1] == 1:
            advice = (
                "a one-unit model must end in a sigmoid or a linear layer that Keras shows (Dense(1, "
                "activation='sigmoid'), Activation('sigmoid'), keras.ops.sigmoid)"
                if output.shape[-1] == 1
                else "choose `score: probabilities` to differentiate the model's output as it is, or end the model "
                "in a Keras Activation/Softmax layer or a Dense layer with activation='softmax'"
            )
            raise ValueError(
                f"model {model.name!r}: the class scores before a softmax or sigmoid cannot be found: {refused}; "
                f"{advice}"
            ) from None
        logits, source, squash, substitutes = output, "", None, {}
    binary = output.shape[-1] == 1 and squash == "sigmoid"
    if score == "probabilities":
        operation, _ = _producer(output)
        scores, substitutes = output, {}
        description = f"probabilities: output of {_describe(operation, '')}"
        if squash == "log_softmax":  # the output is log p
            scores = keras.ops.exp(keras.ops.cast(output, "float32"))
            description = f"probabilities: exp of the log-probabilities output of {_describe(operation, '')}"
        if binary:
            description = f"probabilities: [1 - p, p] of the one-unit output p of {_describe(operation, '')}"
    else:
        scores = logits
        description = f"logits: [-z, z] of the one-unit {source}" if binary else f"logits: {source}"
    if binary:
        scores = _binary(scores, score)
    if scores.dtype != "float32":
        scores = keras.ops.cast(scores, "float32")
    return ScoreSource(scores, description, MappingProxyType(substitutes))


def score_tensor(model: keras.Model, score: str = "logits") -> keras.KerasTensor:
    """The symbolic class scores of ``model`` (see :func:`score_source`)."""
    return score_source(model, score).tensor


def log_probabilities(model: keras.Model) -> bool:
    """Whether ``model`` ends in a log_softmax (its outputs are log p; :func:`score_source` takes exp for
    probabilities)."""
    try:
        return _logits(model.outputs[0])[2] == "log_softmax"
    except (_Refused, AttributeError, IndexError):
        return False


def one_unit_sigmoid(model: keras.Model) -> bool:
    """Whether ``model`` is a one-unit sigmoid classifier (two classes, see :func:`score_source`)."""
    return model.outputs[0].shape[-1] == 1 and score_source(model, "probabilities").tensor.shape[-1] == 2


def multi_label(model: keras.Model) -> bool:
    """Whether ``model`` ends in several sigmoids (a multi-label model: each output a finding of its own)."""
    try:
        return model.outputs[0].shape[-1] > 1 and _logits(model.outputs[0])[2] == "sigmoid"
    except (_Refused, AttributeError, IndexError):
        return False


def two_class_probabilities(p: np.ndarray) -> np.ndarray:
    """Probabilities (N, 2) of the two classes from a one-unit sigmoid model's outputs p (N, 1): [1 - p, p]."""
    return np.asarray(_binary(np.asarray(p, np.float32), "probabilities"), np.float32)


def is_relu(operation: Any) -> bool:
    """A layer or operation whose output is a plain ReLU (max(z, 0), possibly capped)."""
    if isinstance(operation, keras.layers.ReLU):
        return float(operation.negative_slope) == 0.0 and float(operation.threshold) == 0.0
    if type(operation).__name__ in ("Relu", "Relu6"):  # keras.ops.relu / relu6 in a functional graph
        return True
    return isinstance(operation, keras.layers.Layer) and _activation_name(operation) in ("relu", "relu6")


def has_relu(graph: keras.Model) -> bool:
    """Whether ``graph`` (nested sub-models included) has a plain ReLU (:func:`is_relu`) for a guided gate to act on."""
    for operation in graph.operations:
        inner = submodel_graph(operation) if isinstance(operation, keras.layers.Layer) else None
        if is_relu(operation) or (inner is not None and has_relu(inner)):
            return True
    return False


def opaque_layers(graph: keras.Model) -> list[str]:
    """The layers of ``graph`` (nested sub-models included) whose inside the gate cannot see: ``Lambda`` layers and
    layers of the user's own classes (a ReLU in their ``call`` keeps its plain gradient)."""
    found = []
    for operation in graph.operations:
        if not isinstance(operation, keras.layers.Layer):
            continue
        inner = submodel_graph(operation)
        if inner is not None:
            found.extend(opaque_layers(inner))
        elif isinstance(operation, keras.layers.Lambda) or not type(operation).__module__.startswith("keras"):
            found.append(operation.name)
    return found


def warn_without_relu(graph: keras.Model, model_name: str) -> None:
    """Warn where guided backpropagation has no ReLU to gate (its maps are then the plain gradient's, exactly) or
    where some ReLUs may hide from it in ``Lambda`` or custom layers (its maps then gate some ReLUs, not all)."""
    hidden = opaque_layers(graph)
    inside = (
        f"; it has Lambda or custom layers ({', '.join(hidden[:3])}{', ...' if len(hidden) > 3 else ''}), whose ReLUs "
        "keep their plain gradient: write them as keras.layers.ReLU() or keras.ops.relu in the functional graph"
    ) if hidden else ""  # fmt: skip
    if not has_relu(graph):
        what = "no ReLU that guided backpropagation can see" if hidden else (
            "no ReLU (its activations are LeakyReLU, ELU, swish, GELU, ...)"
        )  # fmt: skip
        warnings.warn(
            f"model {model_name!r} has {what}: guided backpropagation gates ReLUs only, as Captum's GuidedBackprop "
            "does, so its maps here are the plain gradient's (saliency's, and Guided Grad-CAM's its product with "
            f"Grad-CAM){inside}",
            stacklevel=4,
        )
    elif hidden:
        warnings.warn(
            f"model {model_name!r}: guided backpropagation gates the ReLUs it sees, but{inside[1:]}; its maps mix "
            "guided and plain gradients",
            stacklevel=4,
        )


def replay(
    graph: keras.Model,
    inputs: Any,
    target: Path,
    gate: Callable[[Any], Any] | None,
    at_target: Callable[[Any], Any] | None,
) -> Any:
    """Run ``graph`` on real tensors layer by layer, as Functional.call does, with two hooks.

    ``target`` (a path of nested layers): its output goes through ``at_target``,
    whose result the rest of the graph sees (the output itself to read it, or
    another value to differentiate with respect to it).
    ``gate`` (guided backpropagation): every ReLU output passes through it.
    """
    from keras.src.models.functional import operation_fn as with_call_context

    def operation_fn(operation: Any) -> Callable:
        call = with_call_context(operation, training=False)
        on_path = len(target) > 0 and operation is target[0]
        inner_graph = submodel_graph(operation) if isinstance(operation, keras.layers.Layer) else None
        descend = inner_graph is not None and (gate is not None or (on_path and len(target) > 1))

        def run(*args: Any, **kwargs: Any) -> Any:
            if descend:
                inner_target = target[1:] if on_path and len(target) > 1 else ()
                outputs = replay(inner_graph, args[0] if len(args) == 1 else args, inner_target, gate, at_target)
            else:
                outputs = call(*args, **kwargs)
            if gate is not None and is_relu(operation):
                outputs = gate(outputs)
            if on_path and len(target) == 1:
                outputs = at_target(outputs)
            return outputs

        return run

    outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
    return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs


class GuidedSwitch:
    """Whether the guided gates of a replayed graph gate the backward pass being built (default) or pass it on.

    A backend's gate reads it when the backward pass is traced (TensorFlow, JAX) or
    run (PyTorch), so that one forward pass can serve a plain backward pass and a
    guided one (Guided Grad-CAM).
    """

    def __init__(self) -> None:
        self.guided = True


class Forward:
    """The class scores of a graph, replayed with a target layer and an optional guided gate.

    A backend module builds its gradient from these three views of one forward pass.
    """

    def __init__(self, graph: keras.Model, target: Path, gate: Callable[[Any], Any] | None):
        self.graph = graph
        self.target = target
        self.gate = gate

    def scores(self, x: Any) -> Any:
        """The scores alone (the target layer is not read)."""
        return replay(self.graph, x, (), self.gate, None)

    def capture(self, x: Any) -> tuple[Any, Any]:
        """(the target layer's output, or ``x`` without a target layer; the scores)."""
        if not self.target:
            return x, self.scores(x)
        captured: list = []

        def read(outputs: Any) -> Any:
            if not captured:  # a shared layer: its first call in the graph
                captured.append(outputs)
            return outputs

        scores = replay(self.graph, x, self.target, self.gate, read)
        if not captured:
            raise ValueError(f"layer {self.target[-1].name!r} is not reached from the model's input")
        return captured[0], scores

    def shifted(self, x: Any, offset: Any) -> tuple[Any, Any]:
        """(the scores with ``offset`` added to the target layer's output (its first call), that output).

        At ``offset = 0`` the gradient with respect to ``offset`` is the gradient with
        respect to the layer's output, from one replay of the graph, where a backend
        differentiates functions, not tapes.
        """
        captured: list = []

        def shift(outputs: Any) -> Any:
            if captured:
                return outputs
            captured.append(outputs)
            return outputs + offset

        scores = replay(self.graph, x, self.target, self.gate, shift)
        if not captured:
            raise ValueError(f"layer {self.target[-1].name!r} is not reached from the model's input")
        return scores, captured[0]
