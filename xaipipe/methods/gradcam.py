"""Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization").

w_k^c = mean over positions of dy^c / dA^k: the global-average-pooled gradient of
the class score y^c (before the softmax) with respect to activation map k.
"""

from __future__ import annotations

import numpy as np

from xaipipe.methods.cam import CAMMethod


class GradCAM(CAMMethod):
    name = "gradcam"

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        spatial_axes = tuple(range(2, gradients.ndim - 1))
        return gradients.mean(axis=spatial_axes)
