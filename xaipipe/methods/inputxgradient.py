"""Input x Gradient (Shrikumar et al., 2016, "Not Just a Black Box: Learning Important Features
Through Propagating Activation Differences"; named so in Ancona et al., 2018, "Towards better
understanding of gradient-based attribution methods for Deep Neural Networks").

M_ij = sum_c x_ijc * dS / dx_ijc: the input times the gradient of the class score S
(before the softmax by default), summed over the input channels. The raw map keeps its
sign (for a linear score S = w . x + b it is each position's share sum_c w_c x_c of S - b).
One forward and backward pass per batch, the product and the sum compiled with the gradient.

With ``noise`` (see :mod:`xaipipe.methods.noise`) the statistic is taken of the
per-channel x_k * dS/dx (x_k), x_k the noisy copy, as Captum's
``NoiseTunnel(InputXGradient)``, then summed over the channels.
"""

from __future__ import annotations

from typing import Any

from xaipipe.methods.saliency import SaliencyMap


class InputXGradient(SaliencyMap):
    name = "inputxgradient"

    @staticmethod
    def attribution(inputs: Any, gradients: Any) -> Any:
        """x_c * dS/dx_c (B, T, ..., C)."""
        from keras import ops

        return ops.expand_dims(inputs, 1) * gradients

    @staticmethod
    def reduce_channels(attributions: Any) -> Any:
        """sum_c (B, T, ...)."""
        from keras import ops

        return ops.sum(attributions, axis=-1)
