"""The backend interface: what each of ``_tensorflow``, ``_jax`` and ``_torch`` provides, and the choice among them.

A backend module compiles (TensorFlow, JAX) or wraps (PyTorch) a computation
over a :class:`~xaipipe.autodiff._graph.Forward` replay or a scores graph and
returns a function from numpy arrays to numpy arrays: only inputs go to the
model and only results come back. Functions given as ``reduce``, ``prepare`` or
``perturb`` are written with ``keras.ops`` and are compiled with it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, cast

import keras
import numpy as np

from xaipipe.autodiff._graph import Forward, GuidedSwitch

_BACKENDS = {"tensorflow": "_tensorflow", "jax": "_jax", "torch": "_torch"}


class Backend(Protocol):
    """What a backend module holds (a module satisfies this protocol by its top-level names)."""

    #: Whether a compiled function is compiled again for each new input shape (XLA does), so that callers
    #: pad a call's last chunk to the full chunk size (:meth:`CompiledGraph._chunks`).
    FIXED_SHAPES: bool

    def make_guided_gate(self, switch: GuidedSwitch) -> Callable[[Any], Any]:
        """An identity whose backward pass passes only positive gradients while ``switch.guided`` (all otherwise).

        Put after a ReLU y = max(z, 0), whose own gradient already keeps only z > 0,
        this gives the guided-backpropagation gradient dy * [dy > 0] * [z > 0]
        (Springenberg et al. 2014). The switch is read when the backward pass is
        traced (TensorFlow, JAX) or run (PyTorch).
        """
        ...

    def gradient_function(
        self, forward: Forward, n_targets: int, reduce: Callable[[Any, Any], Any] | None, input_shape: tuple[int, ...]
    ) -> Callable[[np.ndarray, np.ndarray], Any]:
        """numpy (inputs (B, ...), classes (B, T)) -> numpy (source, gradients (B, T, ...), scores (B, K)).

        ``source`` is the output of ``forward.target`` (the input without a target),
        the gradients those of the T class scores picked by ``classes``, summed over
        the batch, with respect to it. With ``reduce``: ``reduce(source, gradients)``.
        """
        ...

    def prepared_gradient_function(
        self, forward: Forward, n_targets: int, prepare: Callable[..., Any], reduce: Callable[..., Any]
    ) -> Callable[..., np.ndarray]:
        """numpy (args, classes (R, T)) -> ``reduce(x, input gradients (R, T, ...), *args)``, ``x = prepare(*args)``.

        The inputs ``x`` (R, ...) are made where the model runs, from the arrays ``args``
        (integrated gradients' path points from inputs, baselines and alphas).
        """
        ...

    def guided_cam_function(
        self,
        forward: Forward,
        switch: GuidedSwitch,
        n_targets: int,
        reduce: Callable[..., Any],
        input_shape: tuple[int, ...],
    ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """numpy (inputs, classes) -> ``reduce(activations, layer gradients, inputs, guided input gradients)``.

        One forward pass (``forward`` built with a gate reading ``switch``): the plain
        backward pass stops at the target layer, the guided one runs to the input.
        """
        ...

    def activation_function(
        self, forward: Forward, reduce: Callable[[Any], Any], input_shape: tuple[int, ...]
    ) -> Callable[[np.ndarray], np.ndarray]:
        """numpy inputs (B, ...) -> numpy ``reduce(activations)``, without gradients.

        ``activations`` is the output of ``forward.target`` (a forward pass, no backward pass).
        """
        ...

    def score_function(self, graph: keras.Model, input_shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """numpy inputs (N, ...) -> numpy scores (N, K), without gradients."""
        ...

    def perturbed_score_function(self, graph: keras.Model, perturb: Callable[..., Any]) -> Callable[..., np.ndarray]:
        """numpy (inputs, images (R,), codes (R, ...)[, labels (B, ...)]) -> numpy scores (R, K) of
        ``perturb(inputs, images, codes[, labels])``; ``labels``: int32 maps, one per input, where given."""
        ...


def backend_module() -> Backend:
    """The implementation for the backend Keras runs on (imported on first use)."""
    name = keras.backend.backend()
    if name not in _BACKENDS:
        raise RuntimeError(f"xaipipe differentiates on the Keras backends {sorted(_BACKENDS)}, not {name!r}")
    return cast(Backend, importlib.import_module(f".{_BACKENDS[name]}", __package__))
