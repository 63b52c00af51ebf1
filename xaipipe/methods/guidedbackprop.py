"""Guided backpropagation (Springenberg et al., 2014, "Striving for Simplicity: The All
Convolutional Net").

The gradient of the class score with respect to the input, except that at every
ReLU it flows back only where both the ReLU's input and the incoming gradient are
positive: R_l = [z_l > 0] * [R_{l+1} > 0] * R_{l+1}. The map is the maximum over
input channels of the ABSOLUTE guided gradient, max_c |R_0|, as for saliency maps
(the signed gradient at the input can be negative through the first layer's weights).
With ``noise`` the statistic is taken of the signed guided gradients, as for saliency maps.

The guided ReLU gradient is applied while replaying the model's graph (see
:mod:`xaipipe.autodiff`); the user's model, compiled or not, is never modified.
ReLUs hidden inside a custom (subclassed) layer keep their ordinary gradient.
"""

from __future__ import annotations

from xaipipe.methods.saliency import SaliencyMap


class GuidedBackprop(SaliencyMap):
    name = "guidedbackprop"
    guided = True
