"""LayerCAM (Jiang et al., 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for
Localization", IEEE Transactions on Image Processing 30).

    M^c = ReLU(sum_k ReLU(g^k) * A^k),   g^k = dS^c / dA^k,

each position of each activation map weighted by its own positive gradient, summed
over the channels, then upsampled like Grad-CAM. Weighting per position rather than
per channel keeps fine detail, so the map means something at early layers too, where
Grad-CAM's channel averages blur it (the paper fuses maps of several layers; here each
map is that of the one ``layer`` given). Where every gradient is positive it is HiResCAM's map.
"""

from __future__ import annotations

from typing import Any

from xaipipe.methods.cam import CAMMethod


class LayerCAM(CAMMethod):
    name = "layercam"

    def combine(self, activations: Any, gradients: Any) -> Any:
        from keras import ops

        return ops.sum(ops.relu(gradients) * ops.expand_dims(activations, 1), axis=-1)
