"""Batched gradients of class scores, compiled once per model (TensorFlow backend).

This is the only module that differentiates; every gradient-based method
calls it, so another backend needs only another version of this module.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

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
    if not isinstance(model.output, keras.KerasTensor):
        raise ValueError(f"model {model.name!r} has several outputs; xaipipe explains single-output classifiers")
    last = model.layers[-1]
    if score == "probabilities" or _activation_name(last) not in _SQUASHING:
        return model.output
    if isinstance(last, keras.layers.Activation):
        return last.input
    linear = last.__class__.from_config({**last.get_config(), "activation": "linear", "name": f"{last.name}_logits"})
    linear.build(last.input.shape)
    linear.set_weights(last.get_weights())
    return linear(last.input)


class ScoreGradients:
    """Activations of a layer and the gradients of chosen class scores with respect to them.

    With ``layer=None`` the gradients are taken with respect to the input.
    One forward pass serves all requested classes of a batch.
    """

    def __init__(self, model: keras.Model, layer: keras.layers.Layer | None = None, score: str = "logits"):
        scores = score_tensor(model, score)
        source = model.inputs[0] if layer is None else layer.output
        self._graph = keras.Model(model.inputs, [source, scores])
        self._wrt_input = layer is None
        self._input_shape = tuple(model.inputs[0].shape[1:])
        self._compiled: dict[int, Callable] = {}

    def _compile(self, n_targets: int) -> Callable:
        graph, wrt_input = self._graph, self._wrt_input

        def gradients(x: tf.Tensor, classes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            with tf.GradientTape(persistent=n_targets > 1) as tape:
                if wrt_input:
                    tape.watch(x)
                source, scores = graph(x, training=False)
                if wrt_input:
                    source = x
                picked = tf.gather(scores, classes, batch_dims=1)
                targets = [tf.reduce_sum(picked[:, t]) for t in range(n_targets)]
            grads = tf.stack([tape.gradient(target, source) for target in targets], axis=1)
            del tape
            return source, grads, scores

        signature = [
            tf.TensorSpec((None, *self._input_shape), tf.float32),
            tf.TensorSpec((None, n_targets), tf.int32),
        ]
        return tf.function(gradients, input_signature=signature)

    def __call__(self, inputs: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For inputs (B, ...) and classes (B, T): activations (B, ...), gradients (B, T, ...), scores (B, K)."""
        classes = np.asarray(classes, dtype=np.int32)
        if classes.ndim != 2 or len(classes) != len(inputs):
            raise ValueError(f"classes must be (batch, targets), got {classes.shape} for {len(inputs)} inputs")
        n_targets = classes.shape[1]
        if n_targets not in self._compiled:
            self._compiled[n_targets] = self._compile(n_targets)
        source, grads, scores = self._compiled[n_targets](tf.constant(inputs, tf.float32), tf.constant(classes))
        return source.numpy(), grads.numpy(), scores.numpy()
