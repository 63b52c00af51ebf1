"""Batched gradients of class scores, compiled once per model (TensorFlow backend).

This is the only module that differentiates; every gradient-based method
calls it, so another backend needs only another version of this module.
It also holds the batched forward pass that the perturbation methods use.

The forward pass is replayed operation by operation over the model's
functional graph (recursing into nested Functional or Sequential sub-models).
That lets a method read the activations of any layer, nested ones included,
and lets guided backpropagation change the gradient of every ReLU, all without
touching the user's model: its layers, weights and activations are only called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xaipipe.layers import layer_path, submodel_graph

SCORES = ("logits", "probabilities")
_SQUASHING = ("softmax", "sigmoid")


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


def _is_relu(operation: Any) -> bool:
    """A layer or operation whose output is a plain ReLU (max(z, 0), possibly capped)."""
    if isinstance(operation, keras.layers.ReLU):
        return float(operation.negative_slope) == 0.0 and float(operation.threshold) == 0.0
    if type(operation).__name__ in ("Relu", "Relu6"):  # keras.ops.relu / relu6 in a functional graph
        return True
    return isinstance(operation, keras.layers.Layer) and _activation_name(operation) in ("relu", "relu6")


@tf.custom_gradient
def _guided_gate(x: tf.Tensor) -> tuple[tf.Tensor, Callable]:
    """Identity forward; backward passes only positive gradients.

    Put after a ReLU y = max(z, 0), whose own gradient already keeps only z > 0,
    this gives the guided-backpropagation gradient dy * [dy > 0] * [z > 0].
    """

    def gradient(upstream: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(upstream)

    return tf.identity(x), gradient


def _replay(
    graph: keras.Model,
    inputs: Any,
    target: tuple[keras.layers.Layer, ...],
    guided: bool,
    captured: list,
) -> Any:
    """Run ``graph`` on real tensors layer by layer, as Functional.call does, with two hooks.

    ``target`` (a path of nested layers): its output is appended to ``captured``.
    ``guided``: every ReLU output passes through :func:`_guided_gate`.
    """
    from keras.src.models.functional import operation_fn as with_call_context

    def operation_fn(operation: Any) -> Callable:
        call = with_call_context(operation, training=False)
        inner_graph = submodel_graph(operation) if isinstance(operation, keras.layers.Layer) else None
        descend = inner_graph is not None and (guided or (len(target) > 1 and operation is target[0]))

        def run(*args: Any, **kwargs: Any) -> Any:
            if descend:
                inner_target = target[1:] if len(target) > 1 and operation is target[0] else ()
                outputs = _replay(inner_graph, args[0] if len(args) == 1 else args, inner_target, guided, captured)
            else:
                outputs = call(*args, **kwargs)
            if guided and _is_relu(operation):
                outputs = _guided_gate(outputs)
            if len(target) == 1 and operation is target[0] and not captured:
                captured.append(outputs)
            return outputs

        return run

    outputs = graph._run_through_graph(inputs, operation_fn=operation_fn)
    return outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs


class ScoreGradients:
    """Activations of a layer and the gradients of chosen class scores with respect to them.

    With ``layer=None`` the gradients are taken with respect to the input. The
    layer may sit inside a nested sub-model (give the layer or its path of layers).
    ``guided=True`` gives guided-backpropagation gradients (Springenberg et al.
    2014): at every ReLU only positive gradients flow back, and only where the
    ReLU's input was positive. One forward pass serves all requested classes of
    a batch; the computation is compiled once per number of targets.

    ``reduce(source, gradients)``, written with ``keras.ops``, is compiled into the
    same function: a method's maps are then computed where the gradients are, and
    only the maps come back (not the activations and gradients).
    """

    def __init__(
        self,
        model: keras.Model,
        layer: keras.layers.Layer | Sequence[keras.layers.Layer] | None = None,
        score: str = "logits",
        guided: bool = False,
        reduce: Callable[[Any, Any], Any] | None = None,
    ):
        scores = score_tensor(model, score)
        self._graph = keras.Model(model.inputs, scores)
        if layer is None:
            self._target: tuple[keras.layers.Layer, ...] = ()
        elif isinstance(layer, keras.layers.Layer):
            path = layer_path(model, layer)
            if path is None:
                raise ValueError(f"layer {layer.name!r} is not part of model {model.name!r}")
            self._target = path
        else:
            self._target = tuple(layer)
        self._guided = guided
        self._reduce = reduce
        self._input_shape = tuple(model.inputs[0].shape[1:])
        self._compiled: dict[int, Callable] = {}

    def _forward(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        captured: list = []
        scores = _replay(self._graph, x, self._target, self._guided, captured)
        if not self._target:
            return x, scores
        if not captured:
            raise ValueError(f"layer {self._target[-1].name!r} is not reached from the model's input")
        return captured[0], scores

    def _compile(self, n_targets: int) -> Callable:
        wrt_input = not self._target
        reduce = self._reduce

        def gradients(x: tf.Tensor, classes: tf.Tensor) -> Any:
            with tf.GradientTape(persistent=n_targets > 1) as tape:
                if wrt_input:
                    tape.watch(x)
                source, scores = self._forward(x)
                picked = tf.gather(scores, classes, batch_dims=1)
                targets = [tf.reduce_sum(picked[:, t]) for t in range(n_targets)]
            grads = tf.stack([tape.gradient(target, source) for target in targets], axis=1)
            del tape
            if reduce is not None:
                return reduce(source, grads)
            return source, grads, scores

        signature = [
            tf.TensorSpec((None, *self._input_shape), tf.float32),
            tf.TensorSpec((None, n_targets), tf.int32),
        ]
        return tf.function(gradients, input_signature=signature)

    def __call__(self, inputs: np.ndarray, classes: np.ndarray) -> Any:
        """For inputs (B, ...) and classes (B, T): activations (B, ...), gradients (B, T, ...), scores (B, K);
        with ``reduce``, what it returns instead."""
        classes = np.asarray(classes, dtype=np.int32)
        if classes.ndim != 2 or len(classes) != len(inputs):
            raise ValueError(f"classes must be (batch, targets), got {classes.shape} for {len(inputs)} inputs")
        n_targets = classes.shape[1]
        if n_targets not in self._compiled:
            self._compiled[n_targets] = self._compile(n_targets)
        result = self._compiled[n_targets](tf.constant(inputs, tf.float32), tf.constant(classes))
        if self._reduce is not None:
            return result.numpy()
        return tuple(r.numpy() for r in result)

    def path_mean(
        self,
        inputs: np.ndarray,
        baselines: np.ndarray,
        classes: np.ndarray,
        alphas: np.ndarray,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Mean input gradients (B, T, ...) over the points baseline + alpha * (input - baseline).

        All B * len(alphas) points go through the compiled gradient in chunks of
        ``batch_size`` rows, not one call per point. Only for ``layer=None``.
        """
        if self._target:
            raise ValueError("path gradients are taken with respect to the input")
        inputs = np.asarray(inputs, np.float32)
        baselines = np.broadcast_to(np.asarray(baselines, np.float32), inputs.shape)
        classes = np.asarray(classes, np.int32)
        alphas = np.asarray(alphas, np.float32)
        n_steps = len(alphas)
        total = np.zeros((len(inputs), classes.shape[1], *inputs.shape[1:]), np.float32)
        rows = len(inputs) * n_steps
        shape = (-1,) + (1,) * (inputs.ndim - 1)
        for start in range(0, rows, batch_size):
            index = np.arange(start, min(start + batch_size, rows))
            image, step = np.divmod(index, n_steps)
            points = baselines[image] + alphas[step].reshape(shape) * (inputs[image] - baselines[image])
            _, grads, _ = self(points, classes[image])
            first_rows = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])  # rows are sorted by image
            total[image[first_rows]] += np.add.reduceat(grads, first_rows, axis=0)
        return total / n_steps


class Scores:
    """The class scores of a model for many inputs: one compiled forward pass, called in chunks."""

    def __init__(self, model: keras.Model, score: str = "logits"):
        graph = keras.Model(model.inputs, score_tensor(model, score))
        signature = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)]
        self._forward = tf.function(lambda x: graph(x, training=False), input_signature=signature)

    def __call__(self, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Scores (N, K) of inputs (N, ...), ``batch_size`` inputs per model call."""
        chunks = [
            self._forward(tf.constant(inputs[start : start + batch_size], tf.float32)).numpy()
            for start in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(chunks)
