"""Grad-CAM++ (Chattopadhyay et al., 2018, "Grad-CAM++: Generalized Gradient-Based Visual
Explanations for Deep Convolutional Networks").

w_k^c = sum_ij alpha_ij^kc * ReLU(g_ij^k), with g = dS^c / dA^k the gradient of the
class score S^c and the closed form of the paper for an exponential score Y^c = exp(S^c):

    alpha_ij^kc = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k * g_ij^3)

(alpha = 0 where the denominator is 0). The paper's weights carry the positive
factor exp(S^c) of dY^c/dA; it scales a class's whole map, so it is left out, as
in the authors' code, and the raw maps keep the scale of S^c.
"""

from __future__ import annotations

import numpy as np

from xaipipe.methods.cam import CAMMethod


def gradcampp_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Weights (B, T, K) from activations (B, *s, K) and gradients (B, T, *s, K)."""
    spatial_axes = tuple(range(1, activations.ndim - 1))
    a = activations.astype(np.float64)
    g = gradients.astype(np.float64)
    sum_a = a.sum(axis=spatial_axes)  # (B, K)
    sum_a = sum_a.reshape(sum_a.shape[0], 1, *([1] * len(spatial_axes)), sum_a.shape[-1])
    g2 = g**2
    denominator = 2 * g2 + sum_a * g**3
    safe = np.where(denominator != 0, denominator, 1.0)
    alpha = np.where(denominator != 0, g2 / safe, 0.0)
    weights = (alpha * np.maximum(g, 0.0)).sum(axis=tuple(axis + 1 for axis in spatial_axes))
    return weights.astype(np.float32)


class GradCAMPlusPlus(CAMMethod):
    name = "gradcam++"

    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        return gradcampp_weights(activations, gradients)
