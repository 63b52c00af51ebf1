"""Occlusion sensitivity (Zeiler & Fergus, 2014, "Visualizing and Understanding
Convolutional Networks").

A square (2D) or cubic (3D) patch of side ``patch_size`` is set to ``fill`` at
positions ``stride`` apart (the last position of each axis is moved to touch the
border, so every pixel is covered when stride <= patch_size; a patch larger than
the input is shrunk to it, and refused by the workflow's config check). For each patch P the drop of the target score
d_P = S(x) - S(x with P occluded) is computed, and

    M_i = mean of d_P over the patches P that contain pixel i   (0 where none does).

Positive values mark regions whose occlusion lowers the score. All occluded copies
of all images of a batch go through the model ``chunk_size`` at a time; each copy
is made where the model runs, from its image and the index of its patch
(:class:`xaipipe.autodiff.PerturbedScores`).
"""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import PerturbedScores
from xaipipe.methods import defaults
from xaipipe.methods.base import Method, pick_scores, repeat_classes
from xaipipe.methods.params import check_params

_DEFAULTS = defaults("occlusion")


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
        score: str = _DEFAULTS["score"],
        patch_size: int = _DEFAULTS["patch_size"],
        stride: int | None = _DEFAULTS["stride"],
        fill: float = _DEFAULTS["fill"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``stride`` None: ``patch_size``; ``chunk_size``: occluded copies per model call."""
        super().__init__(model, score)
        given = {"patch_size": patch_size, "stride": stride, "fill": fill, "chunk_size": chunk_size}
        checked = check_params(given)  # a patch larger than the input is shrunk to it (the workflow refuses it)
        self.patch_size = checked["patch_size"]
        self.stride = checked["stride"] or self.patch_size
        self.fill = checked["fill"]
        self.chunk_size = checked["chunk_size"]
        axes = [
            [slice(start, start + min(self.patch_size, n)) for start in patch_starts(n, self.patch_size, self.stride)]
            for n in self.spatial_shape
        ]
        self.patches = list(itertools.product(*axes))
        # (P + 1, axes, [start, stop]) of every patch, then an empty box: the copy left intact
        boxes = [[(axis.start, axis.stop) for axis in patch] for patch in self.patches]
        self._boxes = np.array([*boxes, [(0, 0)] * len(self.spatial_shape)], np.int32)
        self._scores = PerturbedScores(model, score, self._occlude)

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "patch_size": self.patch_size, "stride": self.stride, "fill": self.fill}

    def _occlude(self, inputs: Any, images: Any, patches: Any) -> Any:
        """Copies (R, ...) of ``inputs[images]``, each with its box ``patches`` (R,) set to ``fill``, in keras.ops."""
        from keras import ops

        boxes = ops.take(self._boxes, patches, axis=0)  # (R, axes, 2)
        covered = 1.0
        for axis, extent in enumerate(self.spatial_shape):
            position = ops.arange(extent, dtype="int32")[None, :]
            inside = ops.logical_and(position >= boxes[:, axis, 0:1], position < boxes[:, axis, 1:2])  # (R, extent)
            shape = [-1] + [1] * len(self.spatial_shape)
            shape[1 + axis] = extent
            covered = covered * ops.reshape(ops.cast(inside, "float32"), shape)
        covered = ops.expand_dims(covered, -1)
        return ops.take(inputs, images, axis=0) * (1.0 - covered) + self.fill * covered

    def score_drops(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Drops (B, P, T) of the target scores for each of the P patches."""
        copies = len(self.patches) + 1  # the last copy of each image is the image itself
        images = np.repeat(np.arange(len(inputs), dtype=np.int32), copies)
        patches = np.tile(np.arange(copies, dtype=np.int32), len(inputs))
        scores = self._scores(inputs, images, patches, self.chunk_size)
        picked = pick_scores(scores, repeat_classes(classes, copies)).reshape(len(inputs), copies, -1)
        return picked[:, -1:, :] - picked[:, :-1, :]

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        drops = self.score_drops(inputs, classes)
        batch, _, n_targets = drops.shape
        total = np.zeros((batch, n_targets, *self.spatial_shape), np.float64)
        count = np.zeros(self.spatial_shape, np.int64)
        for p, patch in enumerate(self.patches):
            total[(slice(None), slice(None), *patch)] += drops[:, p, :].reshape(batch, n_targets, *[1] * len(patch))
            count[patch] += 1
        return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
