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

from typing import Any

from xaipipe.methods.cam import CAMMethod


def gradcampp_weights(activations: Any, gradients: Any) -> Any:
    """Weights (B, T, K) from activations (B, *s, K) and gradients (B, T, *s, K), in ``keras.ops``."""
    from keras import ops

    activations, gradients = ops.convert_to_tensor(activations), ops.convert_to_tensor(gradients)  # numpy too
    rank = len(activations.shape)
    spatial_axes = tuple(range(1, rank - 1))
    sum_a = ops.sum(activations, axis=spatial_axes)  # (B, K)
    sum_a = ops.reshape(sum_a, (-1, 1, *([1] * len(spatial_axes)), sum_a.shape[-1]))
    g2 = gradients * gradients
    denominator = 2.0 * g2 + sum_a * g2 * gradients
    nonzero = ops.not_equal(denominator, 0.0)
    alpha = ops.where(nonzero, g2 / ops.where(nonzero, denominator, 1.0), 0.0)
    return ops.sum(alpha * ops.relu(gradients), axis=tuple(axis + 1 for axis in spatial_axes))


class GradCAMPlusPlus(CAMMethod):
    name = "gradcam++"

    def channel_weights(self, activations: Any, gradients: Any) -> Any:
        return gradcampp_weights(activations, gradients)
