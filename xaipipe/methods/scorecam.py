"""Score-CAM (Wang et al., 2020, "Score-CAM: Score-Weighted Visual Explanations for
Convolutional Neural Networks", CVPR Workshops 2020).

No gradients: each activation map A^k of the layer (one forward pass) is upsampled
(bi/trilinearly, to the input size) and min-max normalized over its positions,

    H^k = (up(A^k) - min up(A^k)) / (max up(A^k) - min up(A^k) + 1e-8),

the input is masked by it, x * H^k (every input channel), and the class scores of the
K masked copies give the channel weights

    w^c = softmax_k(S^c(x * H^k)),   map_c = ReLU(sum_k w_k^c A^k), upsampled like Grad-CAM's.

This is what pytorch-grad-cam computes (its ``ScoreCAM``), with two deliberate
choices stated here. (1) The softmax over the K channels of the scores S^c, which
are the logits by default (``score``): it makes the weights positive and sum to 1,
and it ignores any offset common to every channel, so the paper's "increase of
confidence" S^c(x * H^k) - S^c(x_baseline) gives the same weights as S^c(x * H^k)
itself and the baseline pass is not needed. (2) The masks are upsampled with half-
pixel centres (OpenCV's INTER_LINEAR, ``xaipipe.maps``), as every map of xaipipe is;
pytorch-grad-cam's ``UpsamplingBilinear2d`` aligns the corners instead, which moves a
downsampled layer's masks slightly (a layer at the input's resolution needs none).
The epsilon 1e-8 of the normalization is pytorch-grad-cam's: a constant map masks the
whole input.

Every masked copy of every image of a batch goes through the model ``chunk_size`` at
a time; each copy is made where the model runs from its image and its channel's
low-resolution activation map (:class:`xaipipe.autodiff.PerturbedScores`), so only
those small maps travel, not K full-size copies. The K masked copies give the scores
of every class at once: all targets of a sample cost K forward passes, plus the one
that reads the activations (:class:`xaipipe.autodiff.LayerActivations`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from scipy.special import softmax

from xaipipe.autodiff import LayerActivations, PerturbedScores
from xaipipe.maps import resize_linear_ops
from xaipipe.methods import defaults
from xaipipe.methods.base import pick_scores, repeat_classes, upsample_to_input
from xaipipe.methods.cam import CAMMethod
from xaipipe.methods.params import check_params

_DEFAULTS = defaults("scorecam")
#: Added to the span of an upsampled activation map before it is divided by it (pytorch-grad-cam's).
EPSILON = 1e-8


class ScoreCAM(CAMMethod):
    name = "scorecam"
    uses_gradients = False

    def __init__(
        self,
        model: keras.Model,
        layer: str | None = _DEFAULTS["layer"],
        score: str = _DEFAULTS["score"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``chunk_size``: masked copies per model call."""
        try:
            self.chunk_size = check_params({"chunk_size": chunk_size})["chunk_size"]
        except ValueError as error:
            raise ValueError(f"{type(self).__name__} ({self.name}): {error}") from None
        super().__init__(model, layer, score)
        self._activations = LayerActivations(model, self.layer_path, score)
        self._scores = PerturbedScores(model, score, self._mask)

    def _mask(self, inputs: Any, images: Any, maps: Any) -> Any:
        """Copies (R, ...) of ``inputs[images]``, each times its map (R, *s) upsampled and min-max normalized."""
        from keras import ops

        upsampled = resize_linear_ops(maps, self.spatial_shape)
        axes = tuple(range(1, len(upsampled.shape)))
        low = ops.min(upsampled, axis=axes, keepdims=True)
        high = ops.max(upsampled, axis=axes, keepdims=True)
        masks = (upsampled - low) / (high - low + EPSILON)
        return ops.take(inputs, images, axis=0) * ops.expand_dims(masks, -1)

    def channel_weights_of(self, inputs: np.ndarray, activations: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Weights (B, T, K): the softmax over the K channels of the target scores of the K masked copies."""
        batch, channels = len(inputs), activations.shape[-1]
        maps = np.moveaxis(activations, -1, 1).reshape(batch * channels, *activations.shape[1:-1])  # image-major
        images = np.repeat(np.arange(batch, dtype=np.int32), channels)
        scores = self._scores(inputs, images, maps, self.chunk_size)
        picked = pick_scores(scores, repeat_classes(classes, channels)).reshape(batch, channels, -1)  # (B, K, T)
        return np.swapaxes(softmax(picked.astype(np.float64), axis=1), 1, 2)  # max-shifted: no overflow

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        activations = self._activations(inputs)  # (B, *s, K)
        weights = self.channel_weights_of(inputs, activations, classes)
        cams = np.maximum(np.einsum("b...k,btk->bt...", activations.astype(np.float64), weights), 0.0)
        return upsample_to_input(cams.astype(np.float32), self.spatial_shape)
