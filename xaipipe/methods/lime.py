"""LIME for images (Ribeiro et al., 2016, "Why Should I Trust You?": Explaining the
Predictions of Any Classifier"): the shared part of LimePro and LimeCon.

The input is split into about ``segments`` superpixels, as ``segmentation`` says:

- ``grid`` (the default): a regular grid of cells (squares in 2D, boxes in 3D) whose
  counts per axis follow the input's aspect, deterministic and the same for every image;
- ``slic``: SLIC superpixels (Achanta et al., 2012, "SLIC Superpixels Compared to
  State-of-the-Art Superpixel Methods"), supervoxels for volumes, found on each model
  input (after preprocessing) by scikit-image's ``skimage.segmentation.slic``
  (``n_segments=segments``, ``start_label=0``, ``channel_axis=-1``, no smoothing,
  connected segments), a k-means in (colour, position) with the distance
  D^2 = d_colour^2 + (compactness * d_space / grid step)^2. Its input: the image with each
  channel rescaled to [0, 1] on its own ((x - min) / (max - min); a constant channel
  becomes 0), so the superpixels do not depend on the intensity scale, nor on any
  per-channel affine standardization of the preprocessing; a 2D image of 3 channels is
  taken as RGB and converted to CIELAB (L in 0..100), as scikit-image does for colour
  images. ``compactness`` (default ``None``: :func:`default_compactness`) weighs position
  against colour: 10 for 2D RGB inputs (scikit-image's default, made for Lab), 0.1 for
  every other input (gray, other channel counts, volumes: intensities in [0, 1], a
  colour range 100 times narrower than Lab's, so the same balance); higher values give
  more grid-like superpixels. Each image has its own count S of superpixels; an image
  that SLIC leaves in fewer than 2 (pure noise, say) is an error naming the sample.

``num_samples`` binary vectors z in {0, 1}^S are drawn from ``seed`` (the first is all
ones, the image itself), the same for every image of S segments (so for every image on
the grid); in the perturbed input the segments with z_s = 0 are set to ``fill`` (where
the model runs, see :class:`xaipipe.autodiff.PerturbedScores`, which takes each image's
label map with it). The target score f(z) of each perturbed input is then fitted per
image by a weighted ridge regression (penalty 1, with intercept, as LIME's default)

    min_w sum_n pi(z_n) (f(z_n) - w_0 - w . z_n)^2 + |w|^2,
    pi(z) = sqrt(exp(-d(z)^2 / kernel_width^2)),  d = cosine distance of z to all ones,

and the map shows the segments with the ``num_features`` largest weights of one
sign (see :mod:`xaipipe.methods.limepro`, :mod:`xaipipe.methods.limecon`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import keras
import numpy as np

from xaipipe.autodiff import PerturbedScores
from xaipipe.methods import defaults
from xaipipe.methods.base import Method, _sample_name, pick_scores, repeat_classes
from xaipipe.methods.params import check_params, combination_problem

RIDGE_PENALTY = 1.0
#: SLIC's compactness for 2D RGB inputs, in CIELAB (scikit-image's default)...
COMPACTNESS_LAB = 10.0
#: ... and for every other input, its channels in [0, 1]: Lab's L spans 0..100, so 10 / 100.
COMPACTNESS_UNIT = 0.1
_DEFAULTS = defaults("limepro")  # LimeCon's too


def grid_segments(shape: tuple[int, ...], segments: int) -> np.ndarray:
    """Labels (*shape) of a regular grid of about ``segments`` cells, numbered 0..S-1."""
    scale = (segments / np.prod(shape)) ** (1 / len(shape))
    counts = [int(np.clip(round(n * scale), 1, n)) for n in shape]
    cells = np.meshgrid(*[np.arange(n) * c // n for n, c in zip(shape, counts)], indexing="ij")
    return np.ravel_multi_index(cells, counts).astype(np.int32)


def is_rgb(input_shape: tuple[int, ...]) -> bool:
    """Whether SLIC takes inputs of ``input_shape`` (*spatial, C) as RGB (converted to Lab): 2D and 3 channels."""
    return len(input_shape) == 3 and input_shape[-1] == 3


def default_compactness(input_shape: tuple[int, ...]) -> float:
    """SLIC's compactness for inputs of ``input_shape`` (*spatial, C): 10 in Lab (2D RGB), 0.1 otherwise."""
    return COMPACTNESS_LAB if is_rgb(input_shape) else COMPACTNESS_UNIT


def slic_input(image: np.ndarray) -> np.ndarray:
    """``image`` (*spatial, C) as SLIC sees it: each channel rescaled to [0, 1] (a constant channel to 0), float64."""
    image = np.asarray(image, np.float64)
    axes = tuple(range(image.ndim - 1))
    low, high = image.min(axis=axes), image.max(axis=axes)
    span = np.where(high > low, high - low, 1.0)
    return (image - low) / span


def slic_segments(image: np.ndarray, segments: int, compactness: float) -> np.ndarray:
    """SLIC labels (*spatial) int32, numbered 0..S-1, of ``image`` (*spatial, C), scaled by :func:`slic_input`."""
    from skimage.segmentation import slic

    labels = slic(
        slic_input(image),
        n_segments=segments,
        compactness=compactness,
        start_label=0,
        channel_axis=-1,
        convert2lab=is_rgb(image.shape),
    )
    _, numbered = np.unique(labels, return_inverse=True)  # 0..S-1 without gaps (slic's already are)
    return numbered.reshape(labels.shape).astype(np.int32)


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


class UnsegmentedImage(ValueError):
    """An image that ``slic`` leaves in fewer than 2 segments (or cannot take): ``row`` is its row in the batch."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(f"sample #{row}: {reason}")
        self.row = row
        self.reason = reason


class Lime(Method):
    """LIME on grid cells or SLIC superpixels; subclasses choose the sign of the weights shown."""

    sign: ClassVar[int]

    def __init__(
        self,
        model: keras.Model,
        score: str = _DEFAULTS["score"],
        num_samples: int = _DEFAULTS["num_samples"],
        segments: int = _DEFAULTS["segments"],
        segmentation: str = _DEFAULTS["segmentation"],
        compactness: float | None = _DEFAULTS["compactness"],
        num_features: int = _DEFAULTS["num_features"],
        kernel_width: float = _DEFAULTS["kernel_width"],
        seed: int = _DEFAULTS["seed"],
        fill: float = _DEFAULTS["fill"],
        chunk_size: int = _DEFAULTS["chunk_size"],
    ):
        """``chunk_size``: perturbed copies per model call; ``segmentation``: ``grid`` or ``slic``;
        ``compactness``: SLIC's (None: :func:`default_compactness` of the model input)."""
        super().__init__(model, score)
        given = {
            "num_samples": num_samples,
            "segments": segments,
            "segmentation": segmentation,
            "compactness": compactness,
            "num_features": num_features,
            "kernel_width": kernel_width,
            "seed": seed,
            "fill": fill,
            "chunk_size": chunk_size,
        }
        try:
            checked = check_params(given, self.spatial_shape)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None
        self.num_samples = checked["num_samples"]
        self.segments = checked["segments"]
        self.segmentation = checked["segmentation"]
        given_compactness = checked["compactness"]
        problem = combination_problem({"segmentation": self.segmentation, "compactness": compactness})
        if problem is not None:  # params leave a grid's compactness out, so the constructor's check would not see it
            raise ValueError(f"{type(self).__name__}: {problem}")
        self.compactness = default_compactness(self.input_shape) if given_compactness is None else given_compactness
        self.num_features = checked["num_features"]
        self.kernel_width = checked["kernel_width"]
        self.seed = checked["seed"]
        self.fill = checked["fill"]
        self.chunk_size = checked["chunk_size"]
        self._scores = PerturbedScores(model, score, self._mask)
        self._drawn: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        #: The grid's labels, its perturbations and their kernel weights (None with ``slic``: they are per image).
        self.labels: np.ndarray | None = None
        self.samples: np.ndarray | None = None
        self.sample_weights: np.ndarray | None = None
        if self.segmentation == "grid":
            self.labels = grid_segments(self.spatial_shape, self.segments)
            self.samples, self.sample_weights = self.perturbations(int(self.labels.max()) + 1)

    @property
    def params(self) -> dict[str, Any]:
        slic = {"compactness": self.compactness} if self.segmentation == "slic" else {}
        return {
            **super().params,
            "num_samples": self.num_samples,
            "segments": self.segments,
            "num_features": self.num_features,
            "kernel_width": self.kernel_width,
            "seed": self.seed,
            "fill": self.fill,
            "segmentation": self.segmentation,
            **slic,
        }

    def perturbations(self, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``num_samples`` binary vectors (N, S) int8 drawn from ``seed`` for S segments (the first all ones)
        and their kernel weights (N,): the same for every image of S segments."""
        if n_segments not in self._drawn:
            rng = np.random.default_rng(self.seed)
            samples = rng.integers(0, 2, (self.num_samples, n_segments), dtype=np.int8)
            samples[0] = 1
            self._drawn[n_segments] = samples, kernel_weights(samples, self.kernel_width)
        return self._drawn[n_segments]

    def segment_labels(self, inputs: np.ndarray) -> np.ndarray:
        """Each input's segment labels (B, *spatial) int32, numbered 0..S_b-1: the grid's, or SLIC's of each image.

        With ``slic`` an image of fewer than 2 segments raises :class:`UnsegmentedImage` naming its row.
        """
        if self.labels is not None:
            return np.broadcast_to(self.labels, (len(inputs), *self.spatial_shape))
        labels = np.empty((len(inputs), *self.spatial_shape), np.int32)
        for row, image in enumerate(np.asarray(inputs)):
            try:
                labels[row] = slic_segments(image, self.segments, self.compactness)
            except ValueError as error:  # scikit-image's: NaN or infinite values
                raise UnsegmentedImage(row, f"{self.name}: segmentation 'slic' cannot take it: {error}") from None
            found = int(labels[row].max()) + 1
            if found < 2:
                raise UnsegmentedImage(
                    row,
                    f"{self.name}: segmentation 'slic' finds {found} superpixel in it (segments {self.segments}, "
                    f"compactness {self.compactness}), LIME needs at least 2 to fit; raise compactness (more "
                    "grid-like superpixels) or use segmentation 'grid'",
                )
        return labels

    def explain_raw(self, inputs: np.ndarray, classes: np.ndarray, ids: Sequence[str] | None = None) -> np.ndarray:
        """As :meth:`Method.explain_raw` (and so :meth:`Method.explain`); an image that SLIC cannot segment is a
        ValueError naming the sample."""
        try:
            return super().explain_raw(inputs, classes, ids)
        except UnsegmentedImage as error:
            raise ValueError(f"sample {_sample_name(error.row, ids)}: {error.reason}") from None

    def _mask(self, inputs: Any, images: Any, kept: Any, labels: Any = None) -> Any:
        """Copies (R, ...) of ``inputs[images]`` with the segments that ``kept`` (R, S) marks 0 set to ``fill``;
        the segments are the grid's, or those of ``labels`` (B, voxels), each input's own."""
        from keras import ops

        kept = ops.cast(kept, "float32")
        if labels is None:
            keep = ops.take(kept, self.labels.reshape(-1), axis=1)  # (R, voxels)
        else:
            keep = ops.take_along_axis(kept, ops.take(labels, images, axis=0), axis=1)
        keep = ops.reshape(keep, (-1, *self.spatial_shape, 1))
        return ops.take(inputs, images, axis=0) * keep + self.fill * (1.0 - keep)

    def perturbed_scores(self, inputs: np.ndarray, classes: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """Target scores (B, num_samples, T) of the perturbed inputs; ``labels``: :meth:`segment_labels`.

        Every copy of every image goes through the model ``chunk_size`` at a time; each image's
        perturbations have its own segment count S_b, padded with zeros to the batch's largest.
        """
        n = self.num_samples
        images = np.repeat(np.arange(len(inputs), dtype=np.int32), n)
        if self.labels is not None:  # the grid: one label map, the same perturbations for every image
            kept = np.tile(self.samples, (len(inputs), 1))  # int8: (B * N, S)
            scores = self._scores(inputs, images, kept, self.chunk_size)
        else:
            labels = self.segment_labels(inputs) if labels is None else labels
            counts = labels.reshape(len(inputs), -1).max(axis=1) + 1
            kept = np.zeros((len(inputs), n, int(counts.max())), np.int8)
            for row, count in enumerate(counts):
                kept[row, :, :count] = self.perturbations(int(count))[0]
            flat = labels.reshape(len(inputs), -1)
            scores = self._scores(inputs, images, kept.reshape(len(inputs) * n, -1), self.chunk_size, labels=flat)
        return pick_scores(scores, repeat_classes(classes, n)).reshape(len(inputs), n, -1)

    def segment_weights(self, inputs: np.ndarray, classes: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """The ridge weights (B, T, S) of the segments for each image and target; with ``slic`` S is the batch's
        largest count, each image's weights beyond its own count 0. ``labels``: :meth:`segment_labels`."""
        labels = self.segment_labels(inputs) if labels is None else labels
        scores = self.perturbed_scores(inputs, classes, labels)  # (B, N, T)
        batch, n, n_targets = scores.shape
        counts = labels.reshape(batch, -1).max(axis=1) + 1
        weights = np.zeros((batch, n_targets, int(counts.max())))
        for count in np.unique(counts):  # one fit per segment count: those images share their perturbations
            rows = np.flatnonzero(counts == count)
            samples, sample_weights = self.perturbations(int(count))
            targets = scores[rows].transpose(1, 0, 2).reshape(n, len(rows) * n_targets).astype(np.float64)
            coefficients = weighted_ridge(samples, targets, sample_weights)  # (G*T, S_b)
            weights[rows, :, :count] = coefficients.reshape(len(rows), n_targets, -1)
        return weights

    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        labels = self.segment_labels(inputs)
        # the chosen sign made positive; a padded segment's 0 is never shown (no pixel has its label)
        signed = self.sign * self.segment_weights(inputs, classes, labels)
        order = np.argsort(-signed, axis=-1, kind="stable")[..., : self.num_features]
        top = np.take_along_axis(signed, order, axis=-1)
        shown = np.zeros_like(signed)
        np.put_along_axis(shown, order, np.maximum(top, 0.0), axis=-1)
        batch, n_targets = shown.shape[:2]
        pixels = np.broadcast_to(labels.reshape(batch, 1, -1), (batch, n_targets, labels[0].size))
        maps = np.take_along_axis(shown, pixels, axis=-1)
        return maps.reshape(batch, n_targets, *self.spatial_shape).astype(np.float32)
