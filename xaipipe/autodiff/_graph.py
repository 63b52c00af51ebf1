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

from collections.abc import Callable
from typing import Any

import keras

from xaipipe.layers import submodel_graph

SCORES = ("logits", "probabilities")
_SQUASHING = ("softmax", "sigmoid")

Path = tuple[keras.layers.Layer, ...]


def _activation_name(layer: keras.layers.Layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return None if activation is None else keras.activations.serialize(activation)


def score_tensor(model: keras.Model, score: str = "logits") -> keras.KerasTensor:
    """The symbolic class scores of ``model``.

    ``logits`` (as in the Grad-CAM paper) are the scores before a final softmax
    or sigmoid: the input of a final Activation layer, or a linear copy of a final
    layer with such an activation. The user's model is not modified.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    outputs = model.outputs  # of the graph, for Functional and built Sequential models alike
    if len(outputs) != 1:
        raise ValueError(f"model {model.name!r} has several outputs; xaipipe explains single-output classifiers")
    output = outputs[0]
    # the final layer and its input in THIS model's graph (a shared layer has inputs in other graphs too)
    history = output._keras_history
    last = history.operation
    squashed = isinstance(last, keras.layers.Layer) and _activation_name(last) in _SQUASHING
    if score == "probabilities" or not squashed:
        return output
    node = last._inbound_nodes[history.node_index]
    if len(node.input_tensors) != 1:
        return output
    last_input = node.input_tensors[0]
    if isinstance(last, keras.layers.Activation):
        return last_input
    linear = last.__class__.from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
    linear.build(last_input.shape)
    linear.set_weights(last.get_weights())
    return linear(last_input)


def is_relu(operation: Any) -> bool:
    """A layer or operation whose output is a plain ReLU (max(z, 0), possibly capped)."""
    if isinstance(operation, keras.layers.ReLU):
        return float(operation.negative_slope) == 0.0 and float(operation.threshold) == 0.0
    if type(operation).__name__ in ("Relu", "Relu6"):  # keras.ops.relu / relu6 in a functional graph
        return True
    return isinstance(operation, keras.layers.Layer) and _activation_name(operation) in ("relu", "relu6")


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
