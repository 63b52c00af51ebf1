"""The JAX backend: jax.jit, jax.vjp, jax.custom_vjp.

JAX differentiates functions, not tapes: the gradient with respect to a layer's
output is the vjp with respect to a zero offset added to that output
(:meth:`Forward.shifted`), so the graph is replayed once. The
model's weights enter the compiled function as arguments (through a Keras
StatelessScope), not as constants baked into it, so they are read at each call.
Each public function implements the one of the same name in
:class:`~xaipipe.autodiff._backend.Backend`, whose docstrings say what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from xaipipe.autodiff._graph import Forward, GuidedSwitch

#: XLA compiles a function for each input shape: callers pad a call's last chunk to the full chunk size.
FIXED_SHAPES = True


def make_guided_gate(switch: GuidedSwitch) -> Callable[[jax.Array], jax.Array]:
    """The guided gate (:meth:`Backend.make_guided_gate`); ``switch`` is read when the pullback is traced."""

    @jax.custom_vjp
    def guided_gate(x: jax.Array) -> jax.Array:
        return x

    def forward(x: jax.Array) -> tuple[jax.Array, None]:
        return x, None

    def backward(_: None, upstream: jax.Array) -> tuple[jax.Array]:
        return (jax.nn.relu(upstream) if switch.guided else upstream,)

    guided_gate.defvjp(forward, backward)
    return guided_gate


def _compile(graph: keras.Model, function: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(function)``, called with ``function``'s arguments: the current values of the graph's
    variables (nested sub-models included, each once) are added to them at each call."""
    seen: dict[int, Any] = {}
    for variable in graph.variables:
        seen.setdefault(id(variable), variable)  # each variable once
    variables = list(seen.values())

    def stateless(state: list, *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, state))):
            return function(*args)

    compiled = jax.jit(stateless)
    return lambda *args: compiled([variable.value for variable in variables], *args)


def _zero_offset(forward: Forward, x: jax.Array) -> jax.Array:
    """Zeros shaped like the target layer's output for ``x`` (its shape is traced, nothing is computed)."""
    shape = jax.eval_shape(lambda inputs: forward.shifted(inputs, 0.0)[1], x)
    return jnp.zeros(shape.shape, shape.dtype)


def _gradients(forward: Forward, x: jax.Array, classes: jax.Array) -> tuple[Any, Any, Any]:
    """(source, gradients (B, T, ...) of the class scores picked by ``classes`` with respect to it, scores)."""
    if not forward.target:
        source = x
        scores, pullback = jax.vjp(forward.scores, x)
    else:
        offset = _zero_offset(forward, x)
        scores, pullback, source = jax.vjp(lambda shift: forward.shifted(x, shift), offset, has_aux=True)
    (grads,) = _pull_targets(pullback, scores, classes)
    return source, grads, scores


def _pull_targets(pullback: Callable, scores: jax.Array, classes: jax.Array) -> Any:
    """``pullback`` of each target's cotangent, stacked on axis 1: gradients (B, T, ...) for each primal."""
    # one cotangent per target: ones at (b, classes[b, t]), i.e. d(sum_b scores[b, classes[b, t]])
    cotangents = jax.nn.one_hot(classes, scores.shape[-1], dtype=scores.dtype)  # (B, T, K)
    return jax.vmap(pullback, in_axes=1, out_axes=1)(cotangents)


def gradient_function(
    forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """Compiled once per input shape; a layer's gradient is the pullback at its zero offset."""

    def gradients(x: jax.Array, classes: jax.Array) -> Any:
        source, grads, scores = _gradients(forward, x, classes)
        if reduce is not None:
            return reduce(source, grads)
        return source, grads, scores

    compiled = _compile(forward.graph, gradients)

    def call(inputs: np.ndarray, classes: np.ndarray) -> Any:
        result = compiled(jnp.asarray(inputs, jnp.float32), jnp.asarray(classes, jnp.int32))
        if reduce is not None:
            return np.asarray(result)
        return tuple(np.asarray(r) for r in result)

    return call


def prepared_gradient_function(
    forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
) -> Callable[..., np.ndarray]:
    """Compiled once per shape of the arguments, ``prepare`` and ``reduce`` with the pullback."""

    def gradients(args: tuple, classes: jax.Array) -> Any:
        x = prepare(*args)
        _, grads, _ = _gradients(forward, x, classes)
        return reduce(x, grads, *args)

    compiled = _compile(forward.graph, gradients)

    def call(args: tuple, classes: np.ndarray) -> np.ndarray:
        arrays = tuple(jnp.asarray(a, jnp.float32) for a in args)
        return np.asarray(compiled(arrays, jnp.asarray(classes, jnp.int32)))

    return call


def guided_cam_function(
    forward: Forward, switch: GuidedSwitch, n_targets: int, reduce: Callable[..., Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """One forward pass, with a zero offset added to the target layer's output; it is
    pulled back twice: plainly for the gradient at the offset (the layer), guided
    for the gradient at the input.
    """

    def gradients(x: jax.Array, classes: jax.Array) -> Any:
        scores, pullback, source = jax.vjp(forward.shifted, x, _zero_offset(forward, x), has_aux=True)
        switch.guided = False
        _, plain = _pull_targets(pullback, scores, classes)  # the input gradient of this pass is unused: XLA drops it
        switch.guided = True
        guided, _ = _pull_targets(pullback, scores, classes)
        return reduce(source, plain, x, guided)

    compiled = _compile(forward.graph, gradients)

    def call(inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(jnp.asarray(inputs, jnp.float32), jnp.asarray(classes, jnp.int32)))

    return call


def activation_function(
    forward: Forward, reduce: Callable[[Any], Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray], np.ndarray]:
    """Compiled once per batch size; no pullback (XLA drops the layers after the target)."""
    compiled = _compile(forward.graph, lambda x: reduce(forward.capture(x)[0]))
    return lambda inputs: np.asarray(compiled(jnp.asarray(inputs, jnp.float32)))


def score_function(graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Compiled once per batch size."""
    compiled = _compile(graph, lambda x: graph(x, training=False))
    return lambda inputs: np.asarray(compiled(jnp.asarray(inputs, jnp.float32)))


def perturbed_score_function(graph: keras.Model, perturb: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Compiled with ``perturb``, once per shape (callers pad to one shape: ``FIXED_SHAPES``)."""
    compiled = _compile(graph, lambda *args: graph(perturb(*args), training=False))

    def call(inputs: np.ndarray, images: np.ndarray, codes: np.ndarray, *labels: np.ndarray) -> np.ndarray:
        arrays = jnp.asarray(inputs, jnp.float32), jnp.asarray(images, jnp.int32), jnp.asarray(codes)
        return np.asarray(compiled(*arrays, *(jnp.asarray(label, jnp.int32) for label in labels)))

    return call
