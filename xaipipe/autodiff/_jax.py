"""The JAX backend: jax.jit, jax.vjp, jax.custom_vjp.

JAX differentiates functions, not tapes: the gradient with respect to a layer's
output is the vjp with respect to a zero offset added to that output
(:meth:`Forward.shifted`), so the graph is replayed once. The
model's weights enter the compiled function as arguments (through a Keras
StatelessScope), not as constants baked into it, so they are read at each call.
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
    """An identity whose backward passes only positive gradients while ``switch.guided`` (see the TensorFlow backend).

    The switch is read when the pullback is traced.
    """

    @jax.custom_vjp
    def guided_gate(x: jax.Array) -> jax.Array:
        return x

    def forward(x: jax.Array) -> tuple[jax.Array, None]:
        return x, None

    def backward(_: None, upstream: jax.Array) -> tuple[jax.Array]:
        return (jax.nn.relu(upstream) if switch.guided else upstream,)

    guided_gate.defvjp(forward, backward)
    return guided_gate


def _variables(graph: keras.Model) -> list:
    """The graph's variables (nested sub-models included), each once."""
    seen: dict[int, Any] = {}
    for variable in graph.variables:
        seen.setdefault(id(variable), variable)
    return list(seen.values())


def _stateless(variables: list, function: Callable) -> Callable:
    """``function(state, *args)``: ``function(*args)`` with the variables taking the values ``state``."""

    def run(state: list, *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, state))):
            return function(*args)

    return run


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
    # one cotangent per target: ones at (b, classes[b, t]), i.e. d(sum_b scores[b, classes[b, t]])
    cotangents = jax.nn.one_hot(classes, scores.shape[-1], dtype=scores.dtype)  # (B, T, K)
    (grads,) = jax.vmap(pullback, in_axes=1, out_axes=1)(cotangents)  # (B, T, ...)
    return source, grads, scores


def gradient_function(
    forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """numpy (inputs (B, ...), classes (B, T)) -> numpy (source, gradients, scores), or ``reduce``'s result."""
    variables = _variables(forward.graph)

    def gradients(x: jax.Array, classes: jax.Array) -> Any:
        source, grads, scores = _gradients(forward, x, classes)
        if reduce is not None:
            return reduce(source, grads)
        return source, grads, scores

    compiled = jax.jit(_stateless(variables, gradients))

    def call(inputs: np.ndarray, classes: np.ndarray) -> Any:
        state = [variable.value for variable in variables]
        result = compiled(state, jnp.asarray(inputs, jnp.float32), jnp.asarray(classes, jnp.int32))
        if reduce is not None:
            return np.asarray(result)
        return tuple(np.asarray(r) for r in result)

    return call


def prepared_gradient_function(
    forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
) -> Callable[..., np.ndarray]:
    """numpy (args, classes (R, T)) -> ``reduce(x, input gradients, *args)`` where ``x = prepare(*args)`` (R, ...)."""
    variables = _variables(forward.graph)

    def gradients(args: tuple, classes: jax.Array) -> Any:
        x = prepare(*args)
        _, grads, _ = _gradients(forward, x, classes)
        return reduce(x, grads, *args)

    compiled = jax.jit(_stateless(variables, gradients))

    def call(args: tuple, classes: np.ndarray) -> np.ndarray:
        state = [variable.value for variable in variables]
        arrays = tuple(jnp.asarray(a, jnp.float32) for a in args)
        return np.asarray(compiled(state, arrays, jnp.asarray(classes, jnp.int32)))

    return call


def guided_cam_function(
    forward: Forward, switch: GuidedSwitch, n_targets: int, reduce: Callable[..., Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """numpy (inputs, classes) -> ``reduce(activations, layer gradients, inputs, guided input gradients)``.

    One forward pass, with a zero offset added to the target layer's output; it is
    pulled back twice: plainly for the gradient at the offset (the layer), guided
    for the gradient at the input.
    """
    variables = _variables(forward.graph)

    def gradients(x: jax.Array, classes: jax.Array) -> Any:
        scores, pullback, source = jax.vjp(forward.shifted, x, _zero_offset(forward, x), has_aux=True)
        cotangents = jax.nn.one_hot(classes, scores.shape[-1], dtype=scores.dtype)  # (B, T, K)
        pull = jax.vmap(pullback, in_axes=1, out_axes=1)
        switch.guided = False
        _, plain = pull(cotangents)  # the input gradient of this pass is unused: XLA drops it
        switch.guided = True
        guided, _ = pull(cotangents)
        return reduce(source, plain, x, guided)

    compiled = jax.jit(_stateless(variables, gradients))

    def call(inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        state = [variable.value for variable in variables]
        return np.asarray(compiled(state, jnp.asarray(inputs, jnp.float32), jnp.asarray(classes, jnp.int32)))

    return call


def score_function(graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """numpy inputs (N, ...) -> numpy scores (N, K), compiled once per batch size."""
    variables = _variables(graph)
    compiled = jax.jit(_stateless(variables, lambda x: graph(x, training=False)))

    def call(inputs: np.ndarray) -> np.ndarray:
        state = [variable.value for variable in variables]
        return np.asarray(compiled(state, jnp.asarray(inputs, jnp.float32)))

    return call


def perturbed_score_function(graph: keras.Model, perturb: Callable[[Any, Any, Any], Any]) -> Callable[..., np.ndarray]:
    """numpy (inputs, images, codes) -> numpy scores of ``perturb(inputs, images, codes)``, compiled with it."""
    variables = _variables(graph)
    compiled = jax.jit(_stateless(variables, lambda *args: graph(perturb(*args), training=False)))

    def call(inputs: np.ndarray, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        state = [variable.value for variable in variables]
        arrays = jnp.asarray(inputs, jnp.float32), jnp.asarray(images, jnp.int32), jnp.asarray(codes)
        return np.asarray(compiled(state, *arrays))

    return call
