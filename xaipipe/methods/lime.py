"""LIME for images (Ribeiro et al., 2016, "Why Should I Trust You?": Explaining the
Predictions of Any Classifier"): the shared part of LimePro and LimeCon.

The input is split into about ``segments`` superpixels: a regular grid of cells
(squares in 2D, boxes in 3D) whose counts per axis follow the input's aspect, so
the segmentation is deterministic and the same for every image. ``num_samples``
binary vectors z in {0, 1}^S are drawn from ``seed`` (the first is all ones, the
image itself) and shared by every image; in the perturbed input the segments with
z_s = 0 are set to ``fill`` (where the model runs, see
:class:`xaipipe.autodiff.PerturbedScores`). The target score f(z) of each perturbed
input is then fitted by a weighted ridge regression (penalty 1, with intercept, as
LIME's default)

    min_w sum_n pi(z_n) (f(z_n) - w_0 - w . z_n)^2 + |w|^2,
    pi(z) = sqrt(exp(-d(z)^2 / kernel_width^2)),  d = cosine distance of z to all ones,

and the map shows the segments with the ``num_features`` largest weights of one
sign (see :mod:`xaipipe.methods.limepro`, :mod:`xaipipe.methods.limecon`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import numpy as np

from xaipipe.autodiff import PerturbedScores
from xaipipe.methods import defaults
from xaipipe.methods.base import Method, pick_scores, repeat_classes
from xaipipe.methods.params import check_params

RIDGE_PENALTY = 1.0
_DEFAULTS = defaults("limepro")  # LimeCon's too


def grid_segments(shape: tuple[int, ...], segments: int) -> np.ndarray:
    """Labels (*shape) of a regular grid of about ``segments`` cells, numbered 0..S-1."""
    scale = (segments / np.prod(shape)) ** (1 / len(shape))
    counts = [int(np.clip(round(n * scale), 1, n)) for n in shape]
    cells = np.meshgrid(*[np.arange(n) * c // n for n, c in zip(shape, counts)], indexing="ij")
    return np.ravel_multi_index(cells, counts).astype(np.int32)


def kernel_weights(samples: np.ndarray, kernel_width: float) -> np.ndarray:
    """LIME's exponential kernel of the cosine distance between each sample and all ones."""
    n_on = samples.sum(axis=1)
    distance = 1.0 - np.sqrt(n_on / samples.shape[1])  # cos(z, 1) = |z|_1 / sqrt(|z|_1 * S)
    return np.sqrt(np.exp(-(distance**2) / kernel_width**2))


def weighted_ridge(samples: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Coefficients (M, S) of a weighted ridge fit with intercept of targets (N, M) on samples (N, S)."""
    x = samples.astype(np.float64)
    w = weights.astype(np.float64)[:, None]
    x_centred = x - (w * x).sum(axis=0) / w.sum()
    y_centred = targets - (w * targets).sum(axis=0) / w.sum()
    gram = x_centred.T @ (w * x_centred) + RIDGE_PENALTY * np.eye(x.shape[1])
    return np.linalg.solve(gram, x_centred.T @ (w * y_centred)).T


class Lime(Method):
    """LIME on grid superpixels; subclasses choose the sign of the weights shown."""

    sign: ClassVar[int]

    def __init__(
        self,
        model: keras.Model,
        score: str = _DEFAULTS["score"],
        num_samples: int = _DEFAULTS["num_samples"],
        segments: int = _DEFAULTS["segments"],
        num_features: int = _DEFAULTS["num_features"],
        kernel_width: float = _DEFAULTS["kernel_width"],
        seed: int = _DEFAULTS["seed"],
        fill: float = _DEFAULTS["fill"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``chunk_size``: perturbed copies per model call."""
        super().__init__(model, score)
        given = {
            "num_samples": num_samples,
            "segments": segments,
            "num_features": num_features,
            "kernel_width": kernel_width,
            "seed": seed,
            "fill": fill,
            "chunk_size": chunk_size,
        }
        checked = check_params(given, self.spatial_shape)
        self.num_samples = checked["num_samples"]
        self.segments = checked["segments"]
        self.num_features = checked["num_features"]
        self.kernel_width = checked["kernel_width"]
        self.seed = checked["seed"]
        self.fill = checked["fill"]
        self.chunk_size = checked["chunk_size"]
        self.labels = grid_segments(self.spatial_shape, self.segments)
        self._scores = PerturbedScores(model, score, self._mask)
        n_segments = int(self.labels.max()) + 1
        samples = np.random.default_rng(self.seed).integers(0, 2, (self.num_samples, n_segments), dtype=np.int8)
        samples[0] = 1
        self.samples = samples
        self.sample_weights = kernel_weights(samples, self.kernel_width)

    @property
    def params(self) -> dict[str, Any]:
        return {
            **super().params,
            "num_samples": self.num_samples,
            "segments": self.segments,
            "num_features": self.num_features,
            "kernel_width": self.kernel_width,
            "seed": self.seed,
            "fill": self.fill,
            "segmentation": "grid",
        }

    def _mask(self, inputs: Any, images: Any, kept: Any) -> Any:
        """Copies (R, ...) of ``inputs[images]`` with the segments that ``kept`` (R, S) marks 0 set to ``fill``."""
        from keras import ops

        keep = ops.take(ops.cast(kept, "float32"), self.labels.reshape(-1), axis=1)  # (R, voxels)
        keep = ops.reshape(keep, (-1, *self.spatial_shape, 1))
        return ops.take(inputs, images, axis=0) * keep + self.fill * (1.0 - keep)

    def perturbed_scores(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Target scores (B, num_samples, T) of the perturbed inputs."""
        n = self.num_samples
        images = np.repeat(np.arange(len(inputs), dtype=np.int32), n)
        kept = np.tile(self.samples, (len(inputs), 1))  # int8: (B * N, S)
        scores = self._scores(inputs, images, kept, self.chunk_size)
        return pick_scores(scores, repeat_classes(classes, n)).reshape(len(inputs), n, -1)

    def segment_weights(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The ridge weights (B, T, S) of the segments for each image and target."""
        scores = self.perturbed_scores(inputs, classes)  # (B, N, T)
        batch, n, n_targets = scores.shape
        targets = scores.transpose(1, 0, 2).reshape(n, batch * n_targets).astype(np.float64)
        coefficients = weighted_ridge(self.samples, targets, self.sample_weights)  # (B*T, S)
        return coefficients.reshape(batch, n_targets, -1)

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        signed = self.sign * self.segment_weights(inputs, classes)  # the chosen sign made positive
        order = np.argsort(-signed, axis=-1, kind="stable")[..., : self.num_features]
        top = np.take_along_axis(signed, order, axis=-1)
        shown = np.zeros_like(signed)
        np.put_along_axis(shown, order, np.maximum(top, 0.0), axis=-1)
        return shown[..., self.labels].astype(np.float32)
