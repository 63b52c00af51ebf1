"""The PyTorch backend: eager autograd (torch.autograd.grad, a torch.autograd.Function gate).

Nothing is compiled: the graph is replayed eagerly, the forward pass of the
perturbation methods under ``torch.no_grad``. Tensors live on the device that
Keras chose (``keras.ops.convert_to_tensor``) and come back as numpy.
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
    """Identity forward; backward passes only positive gradients while the switch is on (see the TensorFlow backend)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, switch: GuidedSwitch) -> torch.Tensor:
        ctx.switch = switch
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
        return (torch.relu(upstream) if ctx.switch.guided else upstream), None


def make_guided_gate(switch: GuidedSwitch) -> Callable[[torch.Tensor], torch.Tensor]:
    """The guided gate reading ``switch`` when the backward pass runs."""
    return lambda x: _GuidedGate.apply(x, switch)


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.numpy(force=True)  # detached, on the CPU


def _gradients(forward: Forward, n_targets: int, x: torch.Tensor, classes: np.ndarray) -> tuple[Any, Any, Any]:
    """(source, gradients (B, T, ...) of the class scores picked by ``classes`` with respect to it, scores)."""
    picks = keras.ops.convert_to_tensor(np.asarray(classes, np.int64))
    # the input always requires a gradient, so that a layer's output does too when no weight is trainable
    x.requires_grad_(True)
    with torch.enable_grad():
        source, scores = forward.capture(x)
        picked = torch.gather(scores, 1, picks)
        grads = torch.stack(
            [
                torch.autograd.grad(picked[:, t].sum(), source, retain_graph=t < n_targets - 1)[0]
                for t in range(n_targets)
            ],
            dim=1,
        )
    return source.detach(), grads, scores.detach()


def gradient_function(
    forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """numpy (inputs (B, ...), classes (B, T)) -> numpy (source, gradients, scores), or ``reduce``'s result."""

    def call(inputs: np.ndarray, classes: np.ndarray) -> Any:
        x = keras.ops.convert_to_tensor(np.asarray(inputs, np.float32))
        source, grads, scores = _gradients(forward, n_targets, x, classes)
        with torch.no_grad():
            if reduce is not None:
                return _to_numpy(reduce(source, grads))
            return _to_numpy(source), _to_numpy(grads), _to_numpy(scores)

    return call


def prepared_gradient_function(
    forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
) -> Callable[..., np.ndarray]:
    """numpy (args, classes (R, T)) -> ``reduce(x, input gradients, *args)`` where ``x = prepare(*args)`` (R, ...)."""

    def call(args: tuple, classes: np.ndarray) -> np.ndarray:
        tensors = [keras.ops.convert_to_tensor(np.asarray(a, np.float32)) for a in args]
        with torch.no_grad():
            x = prepare(*tensors)
        _, grads, _ = _gradients(forward, n_targets, x, classes)
        with torch.no_grad():
            return _to_numpy(reduce(x.detach(), grads, *tensors))

    return call


def guided_cam_function(
    forward: Forward, switch: GuidedSwitch, n_targets: int, reduce: Callable[..., Any], input_shape: tuple[int, ...]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """numpy (inputs, classes) -> ``reduce(activations, layer gradients, inputs, guided input gradients)``.

    One forward pass; the plain backward pass stops at the target layer, the guided one runs to the input.
    """

    def call(inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        x = keras.ops.convert_to_tensor(np.asarray(inputs, np.float32))
        picks = keras.ops.convert_to_tensor(np.asarray(classes, np.int64))
        x.requires_grad_(True)
        with torch.enable_grad():
            source, scores = forward.capture(x)
            targets = [picked.sum() for picked in torch.gather(scores, 1, picks).unbind(1)]
            switch.guided = False
            plain = torch.stack([torch.autograd.grad(t, source, retain_graph=True)[0] for t in targets], dim=1)
            switch.guided = True
            guided = torch.stack(
                [torch.autograd.grad(t, x, retain_graph=k < n_targets - 1)[0] for k, t in enumerate(targets)], dim=1
            )
        with torch.no_grad():
            return _to_numpy(reduce(source.detach(), plain, x.detach(), guided))

    return call


def score_function(graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """numpy inputs (N, ...) -> numpy scores (N, K), without autograd."""

    def call(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _to_numpy(graph(keras.ops.convert_to_tensor(np.asarray(inputs, np.float32)), training=False))

    return call


def perturbed_score_function(graph: keras.Model, perturb: Callable[[Any, Any, Any], Any]) -> Callable[..., np.ndarray]:
    """numpy (inputs, images, codes) -> numpy scores of ``perturb(inputs, images, codes)``, without autograd."""

    def call(inputs: np.ndarray, images: np.ndarray, codes: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            args = [keras.ops.convert_to_tensor(a) for a in (np.asarray(inputs, np.float32), images, codes)]
            return _to_numpy(graph(perturb(*args), training=False))

    return call
