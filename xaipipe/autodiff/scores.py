"""Compiled forward passes, without gradients: :class:`Scores` (class scores of inputs),
:class:`PerturbedScores` (class scores of perturbed copies made where the model runs) and
:class:`LayerActivations` (a layer's activations, or what a method computes from them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff._compiled import CompiledGraph, in_float32
from xaipipe.autodiff._graph import Forward


class Scores(CompiledGraph):
    """The class scores of a model for many inputs: one compiled forward pass, called in chunks."""

    def __init__(self, model: keras.Model, score: str = "logits"):
        super().__init__(model, score)
        self._forward = self._backend.score_function(self._graph, self._input_shape)

    def __call__(self, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Scores (N, K) of inputs (N, ...), ``batch_size`` inputs per model call."""
        chunks = [self._forward(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
        return np.concatenate(chunks)


class PerturbedScores(CompiledGraph):
    """The class scores of many perturbed copies of a few inputs, the copies made where the model runs.

    ``perturb(inputs, images, codes)``, written with ``keras.ops``, is compiled with
    the forward pass: it returns the batch of copies, copy r being ``inputs[images[r]]``
    changed as its code ``codes[r]`` says (which segments LIME keeps, which patch
    occlusion covers). Only the inputs and the small codes travel to the model, not
    hundreds of full-size copies made with numpy, which on a GPU, or for volumes,
    would cost more than the model itself. Where each input has its own integer
    ``labels`` map (LIME's superpixels, found per image), they travel with the inputs,
    once per call, and ``perturb`` takes them as a fourth argument.
    """

    def __init__(self, model: keras.Model, score: str, perturb: Callable[..., Any]):
        super().__init__(model, score)
        self._forward = self._backend.perturbed_score_function(self._graph, perturb)

    def __call__(
        self,
        inputs: np.ndarray,
        images: np.ndarray,
        codes: np.ndarray,
        batch_size: int,
        labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores (R, K) of the R copies given by ``images`` (R,) and ``codes`` (R, ...), ``batch_size`` per call;
        ``labels`` (B, ...): integer maps, one per input, handed to ``perturb`` (None: ``perturb`` takes three)."""
        inputs = np.asarray(inputs, np.float32)
        images = np.asarray(images, np.int32)
        per_input = () if labels is None else (np.asarray(labels, np.int32),)
        chunks = [
            self._forward(inputs, images[rows], codes[rows], *per_input)[:used]
            for rows, used in self._chunks(len(images), batch_size)
        ]
        return np.concatenate(chunks)


class LayerActivations(CompiledGraph):
    """The activations of a layer (a path of nested layers), or ``reduce`` of them: forward passes only.

    ``reduce(activations)``, written with ``keras.ops``, is compiled with the forward
    pass and gets the activations in float32 whatever the model's dtype (without it,
    the activations themselves come back, in float32). For the methods that read a
    layer without differentiating (Eigen-CAM, Score-CAM): no backward pass is built.
    """

    def __init__(
        self,
        model: keras.Model,
        layer: Sequence[keras.layers.Layer],
        score: str = "logits",
        reduce: Callable[[Any], Any] | None = None,
    ):
        super().__init__(model, score)
        forward = Forward(self._graph, self.score_source.graph_path(tuple(layer)), None)
        self._forward = self._backend.activation_function(forward, in_float32(reduce or _identity), self._input_shape)

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        """``reduce(activations)`` (or the activations (B, ...)) for inputs (B, ...): one model call."""
        return self._forward(inputs)


def _identity(activations: Any) -> Any:
    return activations
