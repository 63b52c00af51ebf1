"""HiResCAM (Draelos & Carin, 2020, "Use HiResCAM instead of Grad-CAM for faithful explanations
of convolutional neural networks", arXiv:2011.08891).

    M^c = ReLU(sum_k g^k * A^k),   g^k = dS^c / dA^k,

the element-wise product of each activation map A^k with the gradient of the class
score S^c at it, summed over the channels k, then ReLU and upsampled like Grad-CAM.
Grad-CAM averages g^k over the positions first; where the layer is followed by a
global average pooling and the class scores are linear in it, g^k is the same at
every position and the two maps coincide. Elsewhere HiResCAM keeps where in the map
the score is sensitive: where the layer is followed by a flatten and one dense layer
(the paper's case), its map before the ReLU is each position's exact contribution to
the class score (summed over the positions it gives the score less the dense layer's
bias), which Grad-CAM's need not be.
"""

from __future__ import annotations

from typing import Any

from xaipipe.methods.cam import CAMMethod


class HiResCAM(CAMMethod):
    name = "hirescam"

    def combine(self, activations: Any, gradients: Any) -> Any:
        from keras import ops

        return ops.sum(gradients * ops.expand_dims(activations, 1), axis=-1)
