"""The PyTorch backend: eager autograd (torch.autograd.grad, a torch.autograd.Function gate).

Nothing is compiled: the graph is replayed eagerly, the forward pass of the
perturbation methods under ``torch.no_grad``. Tensors live on the device that
Keras chose (``keras.ops.convert_to_tensor``) and come back as numpy. Each
public function implements the one of the same name in
:class:`~xaipipe.autodiff._backend.Backend`, whose docstrings say what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import torch

from xaipipe.autodiff._graph import Forward, GuidedSwitch

#: Eager: nothing is compiled, chunks of any size cost the same.
FIXED_SHAPES = False


class _GuidedGate(torch.autograd.Function):
    """Identity forward; backward passes only positive gradients while the switch is on."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, switch: GuidedSwitch) -> torch.Tensor:
        ctx.switch = switch
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
        return (torch.relu(upstream) if ctx.switch.guided else upstream), None


def make_guided_gate(switch: GuidedSwitch) -> Callable[[torch.Tensor], torch.Tensor]:
    """The guided gate (:meth:`Backend.make_guided_gate`), reading ``switch`` when the backward pass runs."""
    return lambda x: _GuidedGate.apply(x, switch)


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.numpy(force=True)  # detached, on the CPU


def _target_scores(forward: Forward, x: torch.Tensor, classes: np.ndarray) -> tuple[Any, Any, list]:
    """(source, scores, the T target scores: each the sum over the batch of the score ``classes`` picks).

    Call under ``torch.enable_grad``. The input always requires a gradient, so
    that a layer's output does too when no weight is trainable.
    """
    picks = keras.ops.convert_to_tensor(np.asarray(classes, np.int64))
    x.requires_grad_(True)
    source, scores = forward.capture(x)
    picked = torch.gather(scores, 1, picks)
    return source, scores, [picked[:, t].sum() for t in range(picked.shape[1])]


def _stacked_gradients(targets: list, wrt: torch.Tensor, keep_graph: bool) -> torch.Tensor:
    """The gradients (B, T, ...) of the T ``targets`` with respect to ``wrt``; the graph is freed after the last
    unless ``keep_graph`` (for a later backward pass)."""
    last = len(targets) - 1
    return torch.stack(
        [torch.autograd.grad(t, wrt, retain_graph=keep_graph or k < last)[0] for k, t in enumerate(targets)], dim=1
    )


def _gradients(forward: Forward, x: torch.Tensor, classes: np.ndarray) -> tuple[Any, Any, Any]:
    """(source, gradients (B, T, ...) of the class scores picked by ``classes`` with respect to it, scores)."""
    with torch.enable_grad():
        source, scores, targets = _target_scores(forward, x, classes)
        grads = _stacked_gradients(targets, source, keep_graph=False)
    return source.detach(), grads, scores.detach()


def gradient_function(
    forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """Eager; ``reduce`` runs without autograd."""

    def call(inputs: np.ndarray, classes: np.ndarray) -> Any:
        x = keras.ops.convert_to_tensor(np.asarray(inputs, np.float32))
        source, grads, scores = _gradients(forward, x, classes)
        with torch.no_grad():
            if reduce is not None:
                return _to_numpy(reduce(source, grads))
            return _to_numpy(source), _to_numpy(grads), _to_numpy(scores)

    return call


def prepared_gradient_function(
    forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
) -> Callable[..., np.ndarray]:
    """Eager; ``prepare`` and ``reduce`` run without autograd, ``x`` is a leaf that requires a gradient."""

    def call(args: tuple, classes: np.ndarray) -> np.ndarray:
        tensors = [keras.ops.convert_to_tensor(np.asarray(a, np.float32)) for a in args]
        with torch.no_grad():
            x = prepare(*tensors)
        _, grads, _ = _gradients(forward, x, classes)
        with torch.no_grad():
            return _to_numpy(reduce(x.detach(), grads, *tensors))

    return call


def guided_cam_function(
    forward: Forward, switch: GuidedSwitch, n_targets: int, reduce: Callable[..., Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """One forward pass whose graph is kept for two backward passes: plain to the layer, guided to the input."""

    def call(inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        x = keras.ops.convert_to_tensor(np.asarray(inputs, np.float32))
        with torch.enable_grad():
            source, _, targets = _target_scores(forward, x, classes)
            switch.guided = False
            plain = _stacked_gradients(targets, source, keep_graph=True)
            switch.guided = True
            guided = _stacked_gradients(targets, x, keep_graph=False)
        with torch.no_grad():
            return _to_numpy(reduce(source.detach(), plain, x.detach(), guided))

    return call


def activation_function(
    forward: Forward, reduce: Callable[[Any], Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray], np.ndarray]:
    """Eager, without autograd."""

    def call(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            activations, _ = forward.capture(keras.ops.convert_to_tensor(np.asarray(inputs, np.float32)))
            return _to_numpy(reduce(activations))

    return call


def score_function(graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """Eager, without autograd."""

    def call(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _to_numpy(graph(keras.ops.convert_to_tensor(np.asarray(inputs, np.float32)), training=False))

    return call


def perturbed_score_function(graph: keras.Model, perturb: Callable[..., Any]) -> Callable[..., np.ndarray]:
    """Eager, ``perturb`` and the model without autograd."""

    def call(inputs: np.ndarray, images: np.ndarray, codes: np.ndarray, *labels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            arrays = (np.asarray(inputs, np.float32), images, codes, *labels)
            args = [keras.ops.convert_to_tensor(a) for a in arrays]
            return _to_numpy(graph(perturb(*args), training=False))

    return call
