"""The TensorFlow backend: tf.function, tf.GradientTape, tf.custom_gradient.

Each public function implements the one of the same name in
:class:`~xaipipe.autodiff._backend.Backend`, whose docstrings say what it returns.
"""

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
    """The guided gate (:meth:`Backend.make_guided_gate`); ``switch`` is read when ``tape.gradient`` builds the pass."""

    @tf.custom_gradient
    def guided_gate(x: tf.Tensor) -> tuple[tf.Tensor, Callable]:
        def gradient(upstream: tf.Tensor) -> tf.Tensor:
            return tf.nn.relu(upstream) if switch.guided else upstream

        return tf.identity(x), gradient

    return guided_gate


def _taped_scores(
    forward: Forward, n_targets: int, x: tf.Tensor, classes: tf.Tensor, persistent: bool
) -> tuple[tf.GradientTape, Any, Any, list]:
    """(the tape, source, scores, the T target scores: each the sum over the batch of the score ``classes`` picks).

    The tape watches the input, not only the variables, so that a gradient can be taken with respect
    to the input or to a layer whose output no variable precedes (a Rescaling layer right after the
    input: unwatched, its output is no source the tape knows, and its gradient None); in a traced graph
    this computes nothing more. ``persistent`` for more than one gradient.
    """
    with tf.GradientTape(persistent=persistent) as tape:
        tape.watch(x)
        source, scores = forward.capture(x)
        picked = tf.gather(scores, classes, batch_dims=1)
        targets = [tf.reduce_sum(picked[:, t]) for t in range(n_targets)]
    return tape, source, scores, targets


def _stacked_gradients(tape: tf.GradientTape, targets: list, wrt: tf.Tensor) -> tf.Tensor:
    """The gradients (B, T, ...) of the T ``targets`` with respect to ``wrt``."""
    return tf.stack([tape.gradient(target, wrt) for target in targets], axis=1)


def _gradients(forward: Forward, n_targets: int, x: tf.Tensor, classes: tf.Tensor) -> tuple[Any, Any, Any]:
    """(source, gradients (B, T, ...) of the class scores picked by ``classes`` with respect to it, scores)."""
    tape, source, scores, targets = _taped_scores(
        forward, n_targets, x, classes, persistent=n_targets > 1
    )
    grads = _stacked_gradients(tape, targets, source)
    del tape
    return source, grads, scores


def _signature(input_shape: tuple[int, ...], n_targets: int) -> list[tf.TensorSpec]:
    """Inputs (any batch size, ...) and classes (any batch size, T): one trace for every chunk."""
    return [tf.TensorSpec((None, *input_shape), tf.float32), tf.TensorSpec((None, n_targets), tf.int32)]


def gradient_function(
    forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """Traced once, for any batch size."""

    def gradients(x: tf.Tensor, classes: tf.Tensor) -> Any:
        source, grads, scores = _gradients(forward, n_targets, x, classes)
        if reduce is not None:
            return reduce(source, grads)
        return source, grads, scores

    # plain Python, traced once
    compiled = tf.function(gradients, input_signature=_signature(input_shape, n_targets), autograph=False)

    def call(inputs: np.ndarray, classes: np.ndarray) -> Any:
        result = compiled(tf.constant(inputs, tf.float32), tf.constant(classes))
        if reduce is not None:
            return result.numpy()
        return tuple(r.numpy() for r in result)

    return call


def prepared_gradient_function(
    forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
) -> Callable[..., np.ndarray]:
    """Traced for the first shapes, then once more for any shapes (``reduce_retracing``)."""

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
    """One persistent tape, watching the input, read twice: plainly at the layer, guided at the input."""

    def gradients(x: tf.Tensor, classes: tf.Tensor) -> Any:
        tape, source, _, targets = _taped_scores(forward, n_targets, x, classes, persistent=True)
        switch.guided = False
        plain = _stacked_gradients(tape, targets, source)
        switch.guided = True
        guided = _stacked_gradients(tape, targets, x)
        del tape
        return reduce(source, plain, x, guided)

    compiled = tf.function(gradients, input_signature=_signature(input_shape, n_targets), autograph=False)
    return lambda inputs, classes: compiled(tf.constant(inputs, tf.float32), tf.constant(classes)).numpy()


def activation_function(
    forward: Forward, reduce: Callable[[Any], Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray], np.ndarray]:
    """Traced once, for any batch size; no tape."""
    signature = [tf.TensorSpec((None, *input_shape), tf.float32)]
    compiled = tf.function(lambda x: reduce(forward.capture(x)[0]), input_signature=signature, autograph=False)
    return lambda inputs: compiled(tf.constant(inputs, tf.float32)).numpy()


def score_function(graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Traced once, for any batch size."""
    signature = [tf.TensorSpec((None, *input_shape), tf.float32)]
    compiled = tf.function(lambda x: graph(x, training=False), input_signature=signature)
    return lambda inputs: compiled(tf.constant(inputs, tf.float32)).numpy()


def perturbed_score_function(graph: keras.Model, perturb: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Traced with ``perturb`` for the first shapes, then once more for any batch size (``reduce_retracing``)."""
    compiled = tf.function(
        lambda inputs, images, codes, *labels: graph(perturb(inputs, images, codes, *labels), training=False),
        reduce_retracing=True,
        autograph=False,
    )
    return lambda inputs, images, codes, *labels: compiled(
        tf.constant(inputs, tf.float32),
        tf.constant(images, tf.int32),
        tf.constant(codes),
        *(tf.constant(label, tf.int32) for label in labels),
    ).numpy()
