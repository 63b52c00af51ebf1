"""Eigen-CAM (Muhammad & Yeasin, 2020, "Eigen-CAM: Class Activation Map using Principal
Components", IJCNN 2020).

The first principal component of the layer's activations, without gradients: the
activations of one sample are reshaped to a matrix A (positions, K channels) whose
columns are centred, A_c = A - mean over positions, and

    map = ReLU(s * A_c v_1),   A_c = U S V^T (SVD), v_1 the first column of V,

(computed from the top eigenvector of the smaller Gram matrix, A_c^T A_c or A_c A_c^T,
the same vector up to its sign, cheaper to find),

upsampled like Grad-CAM's (on the host). The SVD fixes v_1 only up to its sign; s = +1 or -1 is
chosen so that the map correlates positively with the activations' channel sum
sum_k A^k (a map that lit up where the layer is silent would otherwise be as likely
as the right one; pytorch-grad-cam leaves the sign to the SVD). One forward pass,
with the SVD computed where the model runs (:class:`xaipipe.autodiff.LayerActivations`).
The map does not depend on the class: every target of a sample gets the same map,
and ``score`` (taken by every method) changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import LayerActivations
from xaipipe.methods import defaults
from xaipipe.methods.base import upsample_to_input
from xaipipe.methods.cam import CAMMethod

_DEFAULTS = defaults("eigencam")


class EigenCAM(CAMMethod):
    name = "eigencam"
    uses_gradients = False

    def __init__(self, model: keras.Model, layer: str | None = _DEFAULTS["layer"], score: str = _DEFAULTS["score"]):
        super().__init__(model, layer, score)
        self._maps = LayerActivations(model, self.layer_path, score, reduce=self.eigen_maps)

    def eigen_maps(self, activations: Any) -> Any:
        """Maps (B, 1, *s) at the layer's resolution from activations (B, *s, K), in ``keras.ops``."""
        from keras import ops

        spatial = tuple(int(n) for n in activations.shape[1:-1])
        flat = ops.reshape(activations, (-1, math.prod(spatial), int(activations.shape[-1])))  # (B, N, K)
        centred = flat - ops.mean(flat, axis=1, keepdims=True)
        # A_c v_1 = s_1 u_1 from the smaller of the two Gram matrices (eigh: ascending eigenvalues), the same
        # up to its sign, which is fixed below, at a fraction of the SVD's cost: positions outnumber channels
        # in the early layers (the K x K matrix A_c^T A_c, whose top eigenvector is v_1), channels outnumber
        # positions in the last ones (ResNet50: 49 x 2,048; the N x N matrix A_c A_c^T, whose top eigenvector
        # is u_1 and top eigenvalue s_1^2); an eigh of the larger one took 19x the model's forward pass there
        n_positions, n_channels = int(flat.shape[1]), int(flat.shape[2])
        if n_positions <= n_channels:
            values, vectors = ops.eigh(ops.einsum("bnk,bmk->bnm", centred, centred))
            projection = vectors[:, :, -1] * ops.sqrt(ops.maximum(values[:, -1:], 0.0))  # (B, N) = s_1 u_1
        else:
            _, vectors = ops.eigh(ops.einsum("bnk,bnl->bkl", centred, centred))
            projection = ops.einsum("bnk,bk->bn", centred, vectors[:, :, -1])  # (B, N), mean 0
        total = ops.sum(flat, axis=-1)
        agreement = ops.sum(projection * (total - ops.mean(total, axis=1, keepdims=True)), axis=1, keepdims=True)
        sign = ops.where(agreement < 0.0, -1.0, 1.0)
        maps = ops.relu(sign * projection)
        return ops.reshape(maps, (-1, 1, *spatial))

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        maps = upsample_to_input(np.asarray(self._maps(inputs), np.float32), self.spatial_shape)  # (B, 1, *spatial)
        return np.repeat(maps, np.shape(classes)[1], axis=1)
