"""Batched gradients of class scores, compiled once per model, on Keras 3's TensorFlow, JAX or PyTorch backend.

This is the only package that differentiates; every gradient-based method
calls it. It also holds the batched forward pass that the perturbation methods use.

The backend is the one Keras runs on (``keras.backend.backend()``, chosen with
``KERAS_BACKEND``; TensorFlow by default). What does not depend on it, the class
scores and the replay of the model's graph with its hooks (read or replace a
layer's output, gate the ReLUs for guided backpropagation), is in
:mod:`xaipipe.autodiff._graph`; each backend module (``_tensorflow``, ``_jax``,
``_torch``) holds only what differs: how a function is compiled, how the
gradient is taken, the guided gate, and the conversion from and to numpy.
The same ``.keras`` file therefore gives the same maps on every backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff._graph import SCORES, Forward, GuidedSwitch, score_tensor
from xaipipe.layers import layer_path

__all__ = ["SCORES", "GuidedCAMGradients", "PerturbedScores", "ScoreGradients", "Scores", "backend_module", "score_tensor"]

_BACKENDS = {"tensorflow": "_tensorflow", "jax": "_jax", "torch": "_torch"}


def backend_module() -> ModuleType:
    """The implementation for the backend Keras runs on (imported on first use)."""
    name = keras.backend.backend()
    if name not in _BACKENDS:
        raise RuntimeError(f"xaipipe differentiates on the Keras backends {sorted(_BACKENDS)}, not {name!r}")
    return importlib.import_module(f"{__name__}.{_BACKENDS[name]}")


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with its first row repeated up to ``size`` rows (for a backend that compiles per shape)."""
    missing = size - len(array)
    return array if missing <= 0 else np.concatenate([array, np.repeat(array[:1], missing, axis=0)])


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
        self._backend = backend_module()
        gate = self._backend.make_guided_gate(GuidedSwitch()) if guided else None
        self._forward = Forward(self._graph, self._target, gate)
        self._compiled: dict[int, Callable] = {}

    def __call__(self, inputs: np.ndarray, classes: np.ndarray) -> Any:
        """For inputs (B, ...) and classes (B, T): activations (B, ...), gradients (B, T, ...), scores (B, K);
        with ``reduce``, what it returns instead."""
        classes = np.asarray(classes, dtype=np.int32)
        if classes.ndim != 2 or len(classes) != len(inputs):
            raise ValueError(f"classes must be (batch, targets), got {classes.shape} for {len(inputs)} inputs")
        n_targets = classes.shape[1]
        if n_targets not in self._compiled:
            self._compiled[n_targets] = self._backend.gradient_function(
                self._forward, n_targets, self._reduce, self._input_shape
            )
        return self._compiled[n_targets](inputs, classes)

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
            used = len(index)
            if self._backend.FIXED_SHAPES and rows > batch_size:
                index = pad_rows(index, batch_size)  # one compiled shape for every chunk
            image, step = np.divmod(index, n_steps)
            points = baselines[image] + alphas[step].reshape(shape) * (inputs[image] - baselines[image])
            _, grads, _ = self(points, classes[image])
            image, grads = image[:used], grads[:used]
            first_rows = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])  # rows are sorted by image
            total[image[first_rows]] += np.add.reduceat(grads, first_rows, axis=0)
        return total / n_steps


class GuidedCAMGradients:
    """Grad-CAM's gradients at a layer and guided backpropagation's at the input, from one forward pass.

    ``reduce(activations, layer_gradients, inputs, input_gradients)``, written with
    ``keras.ops``, is compiled with them (layer gradients (B, T, ...) plain, input
    gradients (B, T, ...) guided, see :class:`ScoreGradients`). The forward pass
    runs once with guided gates that a :class:`GuidedSwitch` turns off for the
    plain backward pass, which stops at the layer, and on for the guided one, so
    the pair costs about one forward and one backward pass instead of two of each.
    """

    def __init__(
        self,
        model: keras.Model,
        layer: Sequence[keras.layers.Layer],
        score: str,
        reduce: Callable[[Any, Any, Any, Any], Any],
    ):
        self._graph = keras.Model(model.inputs, score_tensor(model, score))
        self._reduce = reduce
        self._input_shape = tuple(model.inputs[0].shape[1:])
        self._backend = backend_module()
        self._switch = GuidedSwitch()
        self._forward = Forward(self._graph, tuple(layer), self._backend.make_guided_gate(self._switch))
        self._compiled: dict[int, Callable] = {}

    def __call__(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """What ``reduce`` returns for inputs (B, ...) and classes (B, T)."""
        classes = np.asarray(classes, dtype=np.int32)
        n_targets = classes.shape[1]
        if n_targets not in self._compiled:
            self._compiled[n_targets] = self._backend.guided_cam_function(
                self._forward, self._switch, n_targets, self._reduce, self._input_shape
            )
        return self._compiled[n_targets](inputs, classes)


class Scores:
    """The class scores of a model for many inputs: one compiled forward pass, called in chunks."""

    def __init__(self, model: keras.Model, score: str = "logits"):
        graph = keras.Model(model.inputs, score_tensor(model, score))
        self._forward = backend_module().score_function(graph, tuple(model.inputs[0].shape[1:]))

    def __call__(self, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Scores (N, K) of inputs (N, ...), ``batch_size`` inputs per model call."""
        chunks = [self._forward(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        return np.concatenate(chunks)


class PerturbedScores:
    """The class scores of many perturbed copies of a few inputs, the copies made where the model runs.

    ``perturb(inputs, images, codes)``, written with ``keras.ops``, is compiled with
    the forward pass: it returns the batch of copies, copy r being ``inputs[images[r]]``
    changed as its code ``codes[r]`` says (which segments LIME keeps, which patch
    occlusion covers). Only the inputs and the small codes travel to the model, not
    hundreds of full-size copies made with numpy, which on a GPU, or for volumes,
    would cost more than the model itself.
    """

    def __init__(self, model: keras.Model, score: str, perturb: Callable[[Any, Any, Any], Any]):
        graph = keras.Model(model.inputs, score_tensor(model, score))
        self._backend = backend_module()
        self._forward = self._backend.perturbed_score_function(graph, perturb)

    def __call__(self, inputs: np.ndarray, images: np.ndarray, codes: np.ndarray, batch_size: int) -> np.ndarray:
        """Scores (R, K) of the R copies given by ``images`` (R,) and ``codes`` (R, ...), ``batch_size`` per call."""
        inputs = np.asarray(inputs, np.float32)
        images = np.asarray(images, np.int32)
        pad = self._backend.FIXED_SHAPES and len(images) > batch_size
        chunks = []
        for start in range(0, len(images), batch_size):
            chunk_images, chunk_codes = images[start : start + batch_size], codes[start : start + batch_size]
            used = len(chunk_images)
            if pad:
                chunk_images, chunk_codes = pad_rows(chunk_images, batch_size), pad_rows(chunk_codes, batch_size)
            chunks.append(self._forward(inputs, chunk_images, chunk_codes)[:used])
        return np.concatenate(chunks)
