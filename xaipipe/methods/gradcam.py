"""Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks
via Gradient-based Localization").

w_k^c = mean over positions of dy^c / dA^k: the global-average-pooled gradient of
the class score y^c (before the softmax) with respect to activation map k.
"""

from __future__ import annotations

from typing import Any

from xaipipe.methods.cam import CAMMethod


class GradCAM(CAMMethod):
    name = "gradcam"

    def channel_weights(self, activations: Any, gradients: Any) -> Any:
        from keras import ops

        return ops.mean(gradients, axis=tuple(range(2, len(gradients.shape) - 1)))
