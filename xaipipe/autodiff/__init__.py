"""Batched gradients of class scores, compiled once per model, on Keras 3's TensorFlow, JAX or PyTorch backend.

This is the only package that differentiates; every gradient-based method
calls it: :class:`ScoreGradients` (a layer's or the input's gradients),
:class:`GuidedCAMGradients` (Guided Grad-CAM's two backward passes from one
forward pass), :class:`PathGradients` (integrated gradients). It also holds the
compiled forward passes: :class:`Scores`, and :class:`PerturbedScores` for the
perturbation methods. Whatever can be computed where the model runs (a method's
maps from its gradients, perturbed copies, path points) is compiled with it, so
that only inputs go to the model and only maps come back.

The backend is the one Keras runs on (``keras.backend.backend()``, chosen with
``KERAS_BACKEND``; TensorFlow by default). What does not depend on it, the class
scores and the replay of the model's graph with its hooks (read or shift a
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

__all__ = [
    "SCORES",
    "GuidedCAMGradients",
    "PathGradients",
    "PerturbedScores",
    "ScoreGradients",
    "Scores",
    "backend_module",
    "score_tensor",
]

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


class PathGradients:
    """Mean input gradients along straight paths from baselines to inputs (integrated gradients).

    The points baseline + alpha * (input - baseline) are made where the model runs,
    from the inputs, their baselines and the alphas, and their gradients are summed
    there per image: only the inputs go to the model and one sum per image comes back.
    """

    def __init__(self, model: keras.Model, score: str = "logits"):
        self._graph = keras.Model(model.inputs, score_tensor(model, score))
        self._forward = Forward(self._graph, (), None)
        self._input_shape = tuple(model.inputs[0].shape[1:])
        self._backend = backend_module()
        self._compiled: dict[int, Callable] = {}

    def _points(self, inputs: Any, baselines: Any, alphas: Any) -> Any:
        """(k * m, ...) points, image-major, for k inputs and baselines and m alphas."""
        from keras import ops

        alphas = ops.reshape(alphas, (1, -1) + (1,) * len(self._input_shape))
        points = ops.expand_dims(baselines, 1) + alphas * ops.expand_dims(inputs - baselines, 1)
        return ops.reshape(points, (-1, *self._input_shape))

    @staticmethod
    def _sum_per_image(points: Any, gradients: Any, inputs: Any, baselines: Any, alphas: Any) -> Any:
        """Gradients (k * m, T, ...) summed over each image's m points: (k, T, ...)."""
        from keras import ops

        return ops.sum(ops.reshape(gradients, (ops.shape(inputs)[0], -1, *gradients.shape[1:])), axis=1)

    def mean(
        self,
        inputs: np.ndarray,
        baselines: np.ndarray,
        classes: np.ndarray,
        alphas: np.ndarray,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Mean input gradients (B, T, ...) over the points baseline + alpha * (input - baseline).

        Each model call takes about ``batch_size`` points: whole images' paths when
        they fit (``batch_size // len(alphas)`` images), else one image's path in parts.
        """
        inputs = np.asarray(inputs, np.float32)
        baselines = np.ascontiguousarray(np.broadcast_to(np.asarray(baselines, np.float32), inputs.shape))
        classes = np.asarray(classes, np.int32)
        alphas = np.asarray(alphas, np.float32)
        n_targets = classes.shape[1]
        if n_targets not in self._compiled:
            self._compiled[n_targets] = self._backend.prepared_gradient_function(
                self._forward, n_targets, self._points, self._sum_per_image
            )
        compiled = self._compiled[n_targets]
        images_per_call = max(1, batch_size // len(alphas))
        steps_per_call = min(len(alphas), batch_size)
        pad = self._backend.FIXED_SHAPES and len(inputs) > images_per_call
        total = np.zeros((len(inputs), n_targets, *inputs.shape[1:]), np.float32)
        for first in range(0, len(inputs), images_per_call):
            group = np.arange(first, min(first + images_per_call, len(inputs)))
            used = len(group)
            if pad:
                group = pad_rows(group, images_per_call)  # one compiled shape for every call
            for step in range(0, len(alphas), steps_per_call):
                part = alphas[step : step + steps_per_call]
                sums = compiled((inputs[group], baselines[group], part), np.repeat(classes[group], len(part), axis=0))
                total[group[:used]] += sums[:used]
        return total / len(alphas)
