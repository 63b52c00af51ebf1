"""XGradCAM (Fu et al., 2020, "Axiom-based Grad-CAM: Towards Accurate Visualization and
Explanation of CNNs", BMVC 2020, arXiv:2008.02312).

    w_k^c = sum_ij g_ij^k A_ij^k / (sum_ij A_ij^k + eps),   g^k = dS^c / dA^k,  eps = 1e-7,

the gradients averaged over the positions with the activations as weights (Grad-CAM
averages them uniformly), chosen in the paper to satisfy its sensitivity and
conservation axioms; the map is ReLU(sum_k w_k^c A^k), upsampled like Grad-CAM's.
eps (as in pytorch-grad-cam) keeps a channel that is zero everywhere at weight 0. The
weights assume non-negative activations (a layer after a ReLU): a channel whose
activations sum to nearly zero with both signs would get an arbitrarily large weight.
"""

from __future__ import annotations

from typing import Any

from xaipipe.methods.cam import CAMMethod

EPSILON = 1e-7


def xgradcam_weights(activations: Any, gradients: Any) -> Any:
    """Weights (B, T, K) from activations (B, *s, K) and gradients (B, T, *s, K), in ``keras.ops``."""
    from keras import ops

    spatial_axes = tuple(range(1, len(activations.shape) - 1))
    total = ops.sum(activations, axis=spatial_axes)  # (B, K)
    weighted = ops.sum(gradients * ops.expand_dims(activations, 1), axis=tuple(axis + 1 for axis in spatial_axes))
    return weighted / (ops.expand_dims(total, 1) + EPSILON)


class XGradCAM(CAMMethod):
    name = "xgradcam"

    def channel_weights(self, activations: Any, gradients: Any) -> Any:
        return xgradcam_weights(activations, gradients)
