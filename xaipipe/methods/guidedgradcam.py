"""Guided Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization").

M = GB * L: the elementwise product of the guided-backpropagation map GB
(max over channels of the absolute guided gradient, see
:mod:`xaipipe.methods.guidedbackprop`) and the Grad-CAM map L upsampled to the input.
Both come from one forward pass (:class:`xaipipe.autodiff.GuidedCAMGradients`): a
plain backward pass to the Grad-CAM layer and a guided one to the input.
With ``noise`` the statistic is taken of the maps M (:mod:`xaipipe.methods.noise`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import GuidedCAMGradients
from xaipipe.methods import defaults
from xaipipe.methods.base import Method
from xaipipe.methods.gradcam import GradCAM
from xaipipe.methods.saliency import channel_max_of_magnitude

_DEFAULTS = defaults("guidedgradcam")


class GuidedGradCAM(Method):
    name = "guidedgradcam"

    def __init__(
        self,
        model: keras.Model,
        layer: str | None = _DEFAULTS["layer"],
        score: str = _DEFAULTS["score"],
        noise: Mapping[str, Any] | None = _DEFAULTS["noise"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        super().__init__(model, score)
        self._init_noise(noise, chunk_size)
        self._gradcam = GradCAM(model, layer=layer, score=score)  # the layer lookup and the CAM of its gradients
        self._gradients = GuidedCAMGradients(model, self._gradcam.layer_path, score, reduce=self._maps)

    @property
    def target_layer(self) -> str:
        return self._gradcam.target_layer

    def _maps(self, activations: Any, layer_gradients: Any, inputs: Any, input_gradients: Any) -> Any:
        """GB * L, compiled with the gradients."""
        return channel_max_of_magnitude(inputs, input_gradients) * self._gradcam.cam_maps(activations, layer_gradients)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self.smoothed(self._gradients, inputs, classes)
