"""Guided Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization").

M = GB * L: the elementwise product of the guided-backpropagation map GB
(max over channels of the absolute guided gradient, see
:mod:`xaipipe.methods.guidedbackprop`) and the Grad-CAM map L upsampled to the input.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from xaipipe.methods.base import Method
from xaipipe.methods.gradcam import GradCAM
from xaipipe.methods.guidedbackprop import GuidedBackprop


class GuidedGradCAM(Method):
    name = "guidedgradcam"

    def __init__(self, model: keras.Model, layer: str | None = None, score: str = "logits"):
        super().__init__(model)
        self.score = score
        self._gradcam = GradCAM(model, layer=layer, score=score)
        self._guided = GuidedBackprop(model, score=score)

    @property
    def params(self) -> dict[str, Any]:
        return {"score": self.score}

    @property
    def target_layer(self) -> str:
        return self._gradcam.target_layer

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self._guided.raw_maps(inputs, classes) * self._gradcam.raw_maps(inputs, classes)
