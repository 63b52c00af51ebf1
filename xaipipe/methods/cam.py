"""The Grad-CAM family: a ReLU of a weighted sum of a layer's activation maps."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import ScoreGradients
from xaipipe.layers import find_target_path, path_name
from xaipipe.maps import resize_linear_ops
from xaipipe.methods import defaults
from xaipipe.methods.base import Method

_DEFAULTS = defaults("gradcam")  # Grad-CAM's and Grad-CAM++'s


class CAMMethod(Method):
    """Base of the CAM methods; a subclass states only its channel weights.

    map_c = ReLU(sum_k w_k^c A^k), upsampled (bi/trilinearly) to the input size,
    where A^k are the target layer's activation maps. The target layer may sit
    inside a nested sub-model (``layer="inner_model/conv"`` or ``layer="conv"``).
    With ``noise`` the statistic is taken of the maps (:mod:`xaipipe.methods.noise`).
    """

    def __init__(
        self,
        model: keras.Model,
        layer: str | None = _DEFAULTS["layer"],
        score: str = _DEFAULTS["score"],
        noise: Mapping[str, Any] | None = _DEFAULTS["noise"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        super().__init__(model, score)
        self._init_noise(noise, chunk_size)
        self.layer_path = find_target_path(model, layer)
        self.layer = self.layer_path[-1]
        self._gradients = ScoreGradients(model, self.layer_path, score, reduce=self.cam_maps)

    @property
    def target_layer(self) -> str:
        return path_name(self.layer_path)

    @abstractmethod
    def channel_weights(self, activations: Any, gradients: Any) -> Any:
        """Weights (B, T, K) from activations (B, *s, K) and gradients (B, T, *s, K), in ``keras.ops``."""

    def cam_maps(self, activations: Any, gradients: Any) -> Any:
        """ReLU(sum_k w_k A^k), upsampled to the input: compiled together with the gradients."""
        from keras import ops

        weights = self.channel_weights(activations, gradients)
        axes = "dhw"[-(len(activations.shape) - 2) :]
        cams = ops.relu(ops.einsum(f"b{axes}k,btk->bt{axes}", activations, weights))
        n_targets = int(gradients.shape[1])
        resized = resize_linear_ops(ops.reshape(cams, (-1, *cams.shape[2:])), self.spatial_shape)
        return ops.reshape(resized, (-1, n_targets, *self.spatial_shape))

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self.smoothed(self._gradients, inputs, classes)
