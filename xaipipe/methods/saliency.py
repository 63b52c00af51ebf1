"""Saliency maps (Simonyan et al., 2014, "Deep Inside Convolutional Networks: Visualising
Image Classification Models and Saliency Maps").

M_ij = max_c |dS / dx_ijc|: the largest absolute gradient over the input channels
of the class score S (before the softmax by default) with respect to the input.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import ScoreGradients
from xaipipe.methods import defaults
from xaipipe.methods.base import Method

_DEFAULTS = defaults("saliency")  # guided backprop's too


class SaliencyMap(Method):
    name = "saliency"
    guided = False

    def __init__(self, model: keras.Model, score: str = _DEFAULTS["score"]):
        super().__init__(model, score)
        self._gradients = ScoreGradients(model, None, score, guided=self.guided, reduce=channel_max_of_magnitude)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self._gradients(inputs, classes)


def channel_max_of_magnitude(inputs: Any, gradients: Any) -> Any:
    """max_c |dS/dx_c|, compiled with the gradient so that only the map leaves it."""
    from keras import ops

    return ops.max(ops.abs(gradients), axis=-1)
