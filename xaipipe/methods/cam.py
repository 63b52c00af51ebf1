"""The Grad-CAM family: a ReLU of a weighted sum of a layer's activation maps."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import ScoreGradients
from xaipipe.layers import find_target_path, path_name
from xaipipe.methods.base import Method, upsample_to_input


class CAMMethod(Method):
    """Base of the CAM methods; a subclass states only its channel weights.

    map_c = ReLU(sum_k w_k^c A^k), upsampled (bi/trilinearly) to the input size,
    where A^k are the target layer's activation maps. The target layer may sit
    inside a nested sub-model (``layer="inner_model/conv"`` or ``layer="conv"``).
    """

    def __init__(self, model: keras.Model, layer: str | None = None, score: str = "logits"):
        super().__init__(model)
        self.layer_path = find_target_path(model, layer)
        self.layer = self.layer_path[-1]
        self.score = score
        self._gradients = ScoreGradients(model, self.layer_path, score)

    @property
    def params(self) -> dict[str, Any]:
        return {"score": self.score}

    @property
    def target_layer(self) -> str:
        return path_name(self.layer_path)

    @abstractmethod
    def channel_weights(self, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
        """Weights (B, T, K) from activations (B, *s, K) and gradients (B, T, *s, K)."""

    def cams(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The maps (B, T, *s) at the target layer's resolution."""
        activations, gradients, _ = self._gradients(inputs, classes)
        weights = self.channel_weights(activations, gradients)
        return np.maximum(np.einsum("b...k,btk->bt...", activations, weights), 0.0)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return upsample_to_input(self.cams(inputs, classes), self.spatial_shape)
