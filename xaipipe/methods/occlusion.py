"""Occlusion sensitivity (Zeiler & Fergus, 2014, "Visualizing and Understanding
Convolutional Networks").

A square (2D) or cubic (3D) patch of side ``patch_size`` is set to ``fill`` at
positions ``stride`` apart (the last position of each axis is moved to touch the
border, so every pixel is covered when stride <= patch_size; a patch larger than
the input is shrunk to it). For each patch P the drop of the target score
d_P = S(x) - S(x with P occluded) is computed, and

    M_i = mean of d_P over the patches P that contain pixel i   (0 where none does).

Positive values mark regions whose occlusion lowers the score. All occluded copies
of all images of a batch go through the model ``batch_size`` at a time.
"""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import Scores
from xaipipe.methods.base import Method, check_number, check_positive_int, pick_scores, repeat_classes


def patch_starts(extent: int, patch: int, stride: int) -> list[int]:
    """The start positions of the patches along one axis."""
    patch = min(patch, extent)
    starts = list(range(0, extent - patch + 1, stride))
    if starts[-1] != extent - patch:
        starts.append(extent - patch)
    return starts


class OcclusionSensitivity(Method):
    name = "occlusion"

    def __init__(
        self,
        model: keras.Model,
        layer: str | None = None,
        score: str = "logits",
        patch_size: int = 16,
        stride: int | None = None,
        fill: float = 0.0,
        batch_size: int = 256,
    ):
        super().__init__(model)  # ``layer`` has no meaning here
        self.score = score
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.stride = self.patch_size if stride is None else check_positive_int("stride", stride)
        self.fill = check_number("fill", fill)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self._scores = Scores(model, score)
        axes = [
            [slice(start, start + min(self.patch_size, n)) for start in patch_starts(n, self.patch_size, self.stride)]
            for n in self.spatial_shape
        ]
        self.patches = list(itertools.product(*axes))

    @property
    def params(self) -> dict[str, Any]:
        return {"score": self.score, "patch_size": self.patch_size, "stride": self.stride, "fill": self.fill}

    def score_drops(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Drops (B, P, T) of the target scores for each of the P patches."""
        inputs = np.asarray(inputs, np.float32)
        classes = np.asarray(classes, np.int32)
        n_patches = len(self.patches)
        original = pick_scores(self._scores(inputs, self.batch_size), classes)  # (B, T)
        rows = len(inputs) * n_patches
        occluded_scores = np.empty((rows, classes.shape[1]), np.float32)
        for start in range(0, rows, self.batch_size):
            index = np.arange(start, min(start + self.batch_size, rows))
            images, patches = np.divmod(index, n_patches)
            batch = inputs[images].copy()
            for row, patch in enumerate(patches):
                batch[(row, *self.patches[patch])] = self.fill
            scores = self._scores(batch, self.batch_size)
            occluded_scores[index] = pick_scores(scores, repeat_classes(classes, n_patches)[index])
        return original[:, None, :] - occluded_scores.reshape(len(inputs), n_patches, -1)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        drops = self.score_drops(inputs, classes)
        batch, _, n_targets = drops.shape
        total = np.zeros((batch, n_targets, *self.spatial_shape), np.float64)
        count = np.zeros(self.spatial_shape, np.int64)
        for p, patch in enumerate(self.patches):
            total[(slice(None), slice(None), *patch)] += drops[:, p, :].reshape(batch, n_targets, *[1] * len(patch))
            count[patch] += 1
        return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
