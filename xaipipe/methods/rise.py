"""RISE (Petsiuk et al., 2018, "RISE: Randomized Input Sampling for Explanation of Black-box Models").

N = ``num_masks`` random masks M_i: binary grids of ``cells`` cells along each axis, each
cell kept (1) with probability ``p``, upsampled (bi/trilinearly, pixel centres aligned as
in :func:`xaipipe.maps.resize_linear`) to (cells + 1) * ceil(n / cells) along an axis of
n pixels and cropped to the input at a random shift in 0 .. ceil(n / cells) - 1 per axis,
so that the masks are smooth and their cell borders fall anywhere. Grids and shifts are
drawn from ``seed`` and shared by every input. The saliency of class c is the
mask-weighted mean of its score on the masked inputs x * M_i,

    S_c = sum_i f_c(x * M_i) * M_i / sum_i M_i,

the paper's Monte-Carlo estimate of E[f_c(x * M) M] / p with the realized coverage sum_i M_i in
place of its expectation N * p (E[M] = p at every pixel: each mask value is a convex
combination of Bernoulli(p) cells). Both estimate the same map; the paper's
(1 / (N * p)) * sum_i f_c(x * M_i) * M_i adds to it f_mean * (sum_i M_i / (N p) - 1), each
pixel's chance coverage times the mean score, which is noise wherever the scores are large:
a constant added to every logit (the same classifier) moved its maps by r 0.63, and confident
probabilities near 1 drowned the map in it. Here a constant added to the scores adds that
constant to the map, which the normalization takes off. The raw map keeps the score's sign
(logits may be negative); a pixel that no mask kept (a handful of masks) gets the mean
score. Every target class comes from the same forward passes. The masked copies
are made where the model runs (:class:`xaipipe.autodiff.PerturbedScores`), from a small code
per copy (its grid and shift), ``chunk_size`` copies per model call; the masks themselves are
made again here, ``chunk_size`` at a time, to accumulate the sum, so no more than a chunk of
full-size masks exists at once (4000 masks of 224 x 224 would take 800 MB).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from xaipipe.autodiff import PerturbedScores
from xaipipe.methods import defaults
from xaipipe.methods.base import Method, pick_scores
from xaipipe.methods.params import check_params

_DEFAULTS = defaults("rise")


def shifted_weights(cells: int, extent: int) -> np.ndarray:
    """Interpolation weights (shifts, extent, cells) along one axis of ``extent`` pixels.

    Row [s, j] holds the weights of the ``cells`` grid values in pixel s + j of the grid
    linearly upsampled to (cells + 1) * ceil(extent / cells) pixels (half-pixel centres,
    clamped at the border), for every shift s in 0 .. ceil(extent / cells) - 1.
    """
    cell_size = math.ceil(extent / cells)
    upsampled = (cells + 1) * cell_size
    coords = np.clip((np.arange(upsampled) + 0.5) * (cells / upsampled) - 0.5, 0, cells - 1)
    lo = np.floor(coords).astype(np.intp)
    hi = np.minimum(lo + 1, cells - 1)
    frac = coords - lo
    weights = np.zeros((upsampled, cells))
    np.add.at(weights, (np.arange(upsampled), lo), 1.0 - frac)
    np.add.at(weights, (np.arange(upsampled), hi), frac)
    starts = np.arange(cell_size)[:, None] + np.arange(extent)[None, :]  # (shifts, extent)
    return weights[starts].astype(np.float32)


class RISE(Method):
    name = "rise"

    def __init__(
        self,
        model: keras.Model,
        score: str = _DEFAULTS["score"],
        num_masks: int = _DEFAULTS["num_masks"],
        cells: int = _DEFAULTS["cells"],
        p: float = _DEFAULTS["p"],
        seed: int = _DEFAULTS["seed"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``cells``: grid cells per axis; ``p``: the probability of keeping a cell; ``chunk_size``: masked
        copies per model call."""
        super().__init__(model, score)
        given = {"num_masks": num_masks, "cells": cells, "p": p, "seed": seed, "chunk_size": chunk_size}
        checked = check_params(given, self.spatial_shape, method=self.name)
        self.num_masks = checked["num_masks"]
        self.cells = checked["cells"]
        self.p = checked["p"]
        self.seed = checked["seed"]
        self.chunk_size = checked["chunk_size"]
        rank = len(self.spatial_shape)
        rng = np.random.default_rng(self.seed)
        grids = rng.random((self.num_masks, self.cells**rank)) < self.p
        shifts = [rng.integers(0, math.ceil(n / self.cells), self.num_masks) for n in self.spatial_shape]
        #: Each mask's code: its grid's cells (flattened, 0 or 1), then its shift along each axis.
        self.codes = np.concatenate([grids.astype(np.int32), np.stack(shifts, axis=1).astype(np.int32)], axis=1)
        self._weights = [shifted_weights(self.cells, n) for n in self.spatial_shape]
        self._scores = PerturbedScores(model, score, self._masked)

    @property
    def params(self) -> dict[str, Any]:
        return {
            **super().params,
            "num_masks": self.num_masks,
            "cells": self.cells,
            "p": self.p,
            "seed": self.seed,
        }

    def masks(self, codes: Any) -> Any:
        """The masks (R, *spatial) of mask codes (R, cells^rank + rank), in ``keras.ops``."""
        from keras import ops

        rank = len(self.spatial_shape)
        codes = ops.convert_to_tensor(codes)
        grids = ops.reshape(ops.cast(codes[:, : self.cells**rank], "float32"), (-1, *[self.cells] * rank))
        shifts = ops.cast(codes[:, self.cells**rank :], "int32")
        rows = [ops.take(weights, shifts[:, axis], axis=0) for axis, weights in enumerate(self._weights)]
        if rank == 2:
            return ops.einsum("rij,rhi,rwj->rhw", grids, *rows)
        return ops.einsum("rijk,rdi,rhj,rwk->rdhw", grids, *rows)

    def _masked(self, inputs: Any, images: Any, codes: Any) -> Any:
        """Copies (R, ...) of ``inputs[images]``, each times its mask."""
        from keras import ops

        return ops.take(inputs, images, axis=0) * ops.expand_dims(self.masks(codes), -1)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs, np.float32)
        batch, n = len(inputs), self.num_masks
        images = np.repeat(np.arange(batch, dtype=np.int32), n)
        codes = np.tile(self.codes, (batch, 1))  # image-major: copy b * N + i is input b times mask i
        scores = self._scores(inputs, images, codes, self.chunk_size)
        picked = pick_scores(scores, np.repeat(np.asarray(classes, np.int32), n, axis=0))
        picked = picked.reshape(batch, n, -1).astype(np.float64)  # (B, N, T)
        total = np.zeros((batch, picked.shape[-1], *self.spatial_shape), np.float64)
        coverage = np.zeros(self.spatial_shape, np.float64)  # sum_i M_i, shared by every input
        for first in range(0, n, self.chunk_size):
            masks = np.asarray(keras.ops.convert_to_numpy(self.masks(self.codes[first : first + self.chunk_size])))
            block = picked[:, first : first + len(masks)]
            total += np.tensordot(block, masks.astype(np.float64), axes=([1], [0]))  # (B, T, *spatial)
            coverage += masks.sum(axis=0, dtype=np.float64)
        seen = coverage > 0
        mean = picked.mean(axis=1).reshape(batch, -1, *[1] * len(self.spatial_shape))
        return np.where(seen, total / np.where(seen, coverage, 1.0), mean).astype(np.float32)
