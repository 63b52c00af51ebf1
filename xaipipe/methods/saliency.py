"""Saliency maps (Simonyan et al., 2014, "Deep Inside Convolutional Networks: Visualising
Image Classification Models and Saliency Maps").

M_ij = max_c |dS / dx_ijc|: the largest absolute gradient over the input channels
of the class score S (before the softmax by default) with respect to the input.

With ``noise`` (see :mod:`xaipipe.methods.noise`) the statistic is taken of the signed
gradients dS/dx_ijc over the noisy copies, per channel, and the map is max_c of its
absolute value: SmoothGrad's max_c |mean_k dS/dx_c (x_k)|, as in Smilkov et al.
(average the gradients, then take magnitudes).

:class:`SaliencyMap` is also the base of the other methods made of one input gradient
per batch (guided backpropagation, Input x Gradient): a subclass states its per-channel
``attribution`` of the input and its gradient and its ``reduce_channels``; both are
compiled with the gradient, the reduction after the noise statistic where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import ScoreGradients
from xaipipe.methods import defaults
from xaipipe.methods.base import Method

_DEFAULTS = defaults("saliency")  # guided backprop's and Input x Gradient's too


class SaliencyMap(Method):
    name = "saliency"
    guided = False

    def __init__(
        self,
        model: keras.Model,
        score: str = _DEFAULTS["score"],
        noise: Mapping[str, Any] | None = _DEFAULTS["noise"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``noise``: None, or SmoothGrad's/VarGrad's settings; ``chunk_size``: noisy copies per model call."""
        super().__init__(model, score)
        self._init_noise(noise, chunk_size)
        reduce = self.attribution if self.noise is not None else self._map
        self._gradients = ScoreGradients(model, None, score, guided=self.guided, reduce=reduce)

    @staticmethod
    def attribution(inputs: Any, gradients: Any) -> Any:
        """The per-channel attribution (B, T, ..., C) from inputs (B, ..., C) and gradients (B, T, ..., C):
        here the gradient itself."""
        return gradients

    @staticmethod
    def reduce_channels(attributions: Any) -> Any:
        """The map (B, T, ...) from the per-channel attributions: here max_c |.|."""
        from keras import ops

        return ops.max(ops.abs(attributions), axis=-1)

    def _map(self, inputs: Any, gradients: Any) -> Any:
        return self.reduce_channels(self.attribution(inputs, gradients))

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        if self.noise is None:
            return self._gradients(inputs, classes)
        statistic = self.smoothed(self._gradients, inputs, classes)
        return np.asarray(keras.ops.convert_to_numpy(self.reduce_channels(statistic)), np.float32)


def channel_max_of_magnitude(inputs: Any, gradients: Any) -> Any:
    """max_c |dS/dx_c|, compiled with the gradient so that only the map leaves it."""
    return SaliencyMap.reduce_channels(gradients)
