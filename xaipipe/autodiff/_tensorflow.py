"""The TensorFlow backend: tf.function, tf.GradientTape, tf.custom_gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from xaipipe.autodiff._graph import Forward, GuidedSwitch

#: Chunks of any size share one traced function (a batch dimension of None).
FIXED_SHAPES = False


def make_guided_gate(switch: GuidedSwitch) -> Callable[[tf.Tensor], tf.Tensor]:
    """An identity whose backward passes only positive gradients while ``switch.guided`` (all of them otherwise).

    Put after a ReLU y = max(z, 0), whose own gradient already keeps only z > 0,
    this gives the guided-backpropagation gradient dy * [dy > 0] * [z > 0]. The
    switch is read when ``tape.gradient`` builds the backward pass.
    """

    @tf.custom_gradient
    def guided_gate(x: tf.Tensor) -> tuple[tf.Tensor, Callable]:
        def gradient(upstream: tf.Tensor) -> tf.Tensor:
            return tf.nn.relu(upstream) if switch.guided else upstream

        return tf.identity(x), gradient

    return guided_gate


def _gradients(forward: Forward, n_targets: int, x: tf.Tensor, classes: tf.Tensor) -> tuple[Any, Any, Any]:
    """(source, gradients (B, T, ...) of the class scores picked by ``classes`` with respect to it, scores)."""
    with tf.GradientTape(persistent=n_targets > 1) as tape:
        if not forward.target:
            tape.watch(x)
        source, scores = forward.capture(x)
        picked = tf.gather(scores, classes, batch_dims=1)
        targets = [tf.reduce_sum(picked[:, t]) for t in range(n_targets)]
    grads = tf.stack([tape.gradient(target, source) for target in targets], axis=1)
    del tape
    return source, grads, scores


def gradient_function(
    forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """numpy (inputs (B, ...), classes (B, T)) -> numpy (source, gradients, scores), or ``reduce``'s result."""

    def gradients(x: tf.Tensor, classes: tf.Tensor) -> Any:
        source, grads, scores = _gradients(forward, n_targets, x, classes)
        if reduce is not None:
            return reduce(source, grads)
        return source, grads, scores

    signature = [
        tf.TensorSpec((None, *input_shape), tf.float32),
        tf.TensorSpec((None, n_targets), tf.int32),
    ]
    compiled = tf.function(gradients, input_signature=signature, autograph=False)  # plain Python, traced once

    def call(inputs: np.ndarray, classes: np.ndarray) -> Any:
        result = compiled(tf.constant(inputs, tf.float32), tf.constant(classes))
        if reduce is not None:
            return result.numpy()
        return tuple(r.numpy() for r in result)

    return call


def prepared_gradient_function(
    forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
) -> Callable[..., np.ndarray]:
    """numpy (args, classes (R, T)) -> ``reduce(x, input gradients, *args)`` where ``x = prepare(*args)`` (R, ...)."""

    def gradients(args: tuple, classes: tf.Tensor) -> Any:
        x = prepare(*args)
        _, grads, _ = _gradients(forward, n_targets, x, classes)
        return reduce(x, grads, *args)

    compiled = tf.function(gradients, reduce_retracing=True, autograph=False)
    return lambda args, classes: compiled(
        tuple(tf.constant(a, tf.float32) for a in args), tf.constant(classes, tf.int32)
    ).numpy()


def guided_cam_function(
    forward: Forward, switch: GuidedSwitch, n_targets: int, reduce: Callable[..., Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """numpy (inputs, classes) -> ``reduce(activations, layer gradients, inputs, guided input gradients)``.

    One forward pass; the plain backward pass stops at the target layer, the guided one runs to the input.
    """

    def gradients(x: tf.Tensor, classes: tf.Tensor) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            source, scores = forward.capture(x)
            picked = tf.gather(scores, classes, batch_dims=1)
            targets = [tf.reduce_sum(picked[:, t]) for t in range(n_targets)]
        switch.guided = False
        plain = tf.stack([tape.gradient(target, source) for target in targets], axis=1)
        switch.guided = True
        guided = tf.stack([tape.gradient(target, x) for target in targets], axis=1)
        del tape
        return reduce(source, plain, x, guided)

    signature = [
        tf.TensorSpec((None, *input_shape), tf.float32),
        tf.TensorSpec((None, n_targets), tf.int32),
    ]
    compiled = tf.function(gradients, input_signature=signature, autograph=False)
    return lambda inputs, classes: compiled(tf.constant(inputs, tf.float32), tf.constant(classes)).numpy()


def score_function(graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """numpy inputs (N, ...) -> numpy scores (N, K), compiled once."""
    signature = [tf.TensorSpec((None, *input_shape), tf.float32)]
    compiled = tf.function(lambda x: graph(x, training=False), input_signature=signature)
    return lambda inputs: compiled(tf.constant(inputs, tf.float32)).numpy()


def perturbed_score_function(graph: keras.Model, perturb: Callable[[Any, Any, Any], Any]) -> Callable[..., np.ndarray]:
    """numpy (inputs, images, codes) -> numpy scores of ``perturb(inputs, images, codes)``, compiled with it.

    Traced for the first shapes, then once more for any batch size (``reduce_retracing``).
    """
    compiled = tf.function(
        lambda inputs, images, codes: graph(perturb(inputs, images, codes), training=False),
        reduce_retracing=True,
        autograph=False,
    )
    return lambda inputs, images, codes: compiled(
        tf.constant(inputs, tf.float32), tf.constant(images, tf.int32), tf.constant(codes)
    ).numpy()
