"""What every XAI method shares: target classes, batching, upsampling, normalization."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xaipipe.maps import normalize_maps, resize_linear

if TYPE_CHECKING:
    import keras


class Method(ABC):
    """An XAI method bound to one model.

    Subclasses implement :meth:`raw_maps`, the method's own computation for a
    batch; everything else (class selection, batching, normalization) lives here.
    """

    name: ClassVar[str]

    def __init__(self, model: keras.Model):
        self.model = model
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self.spatial_shape = self.input_shape[:-1]

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that determine the maps (recorded with every output)."""
        return {}

    @property
    def target_layer(self) -> str | None:
        return None

    @abstractmethod
    def raw_maps(self, inputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Maps (B, T, *spatial) at the input resolution for inputs (B, ...) and classes (B, T)."""

    def explain(self, inputs: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw, normalized) maps, each (B, T, *spatial), for one batch."""
        raw = self.raw_maps(inputs, classes)
        normalized = normalize_maps(raw.reshape(-1, *self.spatial_shape)).reshape(raw.shape)
        return raw, normalized


def upsample_to_input(maps: np.ndarray, spatial_shape: tuple[int, ...]) -> np.ndarray:
    """Resize (B, T, *s) maps to (B, T, *spatial_shape)."""
    batch, targets = maps.shape[:2]
    resized = resize_linear(maps.reshape(batch * targets, *maps.shape[2:]), spatial_shape)
    return resized.reshape(batch, targets, *spatial_shape)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1; ValueError naming the parameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_number(name: str, value: Any) -> float:
    """``value`` as a float; ValueError naming the parameter unless it is a real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def repeat_classes(classes: np.ndarray, repeats: int) -> np.ndarray:
    """Classes (B, T) -> (B * repeats, T): each image's targets for each of its perturbations."""
    return np.repeat(np.asarray(classes, np.int32), repeats, axis=0)


def pick_scores(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The scores (N, T) of classes (N, T) from all scores (N, K)."""
    return np.take_along_axis(scores, np.asarray(classes, np.intp), axis=1)


def target_classes(
    scores: np.ndarray, mode: str, labels: np.ndarray | None = None, ids: Sequence[str] | None = None
) -> np.ndarray:
    """The classes (N, T) to explain: ``argmax`` of the scores (T=1), ``all`` classes (T=K),
    or each sample's ``label`` (T=1; -1 marks a missing label, an error naming the sample)."""
    n, k = scores.shape
    if mode == "argmax":
        return scores.argmax(axis=1).astype(np.int32)[:, None]
    if mode == "all":
        return np.tile(np.arange(k, dtype=np.int32), (n, 1))
    if mode == "label":
        if labels is None:
            raise ValueError("targets 'label' needs labels")
        labels = np.asarray(labels, np.int32)
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if len(bad):
            name = ids[bad[0]] if ids is not None else f"#{bad[0]}"
            raise ValueError(f"sample {name!r} has no label among the model's {k} classes (label {labels[bad[0]]})")
        return labels[:, None]
    raise ValueError(f"targets must be 'argmax', 'all' or 'label', got {mode!r}")
