"""Check heatmaps against ground-truth lesion masks (the demo's, or a user's)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaipipe import h5store
from xaipipe.atomic import atomic_path
from xaipipe.drawing import resize_map
from xaipipe.readers import load_mask


@dataclass(frozen=True)
class HitRate:
    """How often the peak of a map lies inside the lesion mask (images with a lesion only)."""

    hits: int
    total: int

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else float("nan")


def peak_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the maximum of ``heatmap``, resized bilinearly to the mask, falls inside the mask."""
    heat = resize_map(heatmap, mask.shape, "opencv", clip=False)
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    return bool(mask[y, x])


def lesion_hit_rate(
    heatmap_paths: Sequence[str | os.PathLike], mask_paths: Mapping[str, str | os.PathLike]
) -> HitRate:
    """Hit rate of the maps in ``heatmap_paths``; ``mask_paths`` maps sample ids to masks, empty masks are skipped.

    The maps of skipped samples (``on_error: skip``) are left out.
    """
    hits = total = 0
    for path in heatmap_paths:
        with h5store.HeatmapsFile.open(path) as maps:
            ids, skipped = maps.ids, maps.skipped
            for m, row in enumerate(maps.sample_index):
                if skipped[row]:
                    continue
                mask = load_mask(mask_paths[ids[row]])
                if mask.any():
                    hits += peak_in_mask(maps.normalized(m), mask)
                    total += 1
    return HitRate(hits, total)


def write_localization_table(
    methods: Sequence[str],
    heatmap_paths: Sequence[str | os.PathLike],
    mask_paths: Mapping[str, str | os.PathLike],
    out_path: str | os.PathLike,
) -> None:
    """One row per method: hits, lesion images, hit rate.

    ``heatmap_paths`` lists every method's heatmaps files, method by method in the order
    of ``methods``, each method with the same number of files (its shards).
    """
    if not methods or len(heatmap_paths) % len(methods):
        raise ValueError(f"{len(heatmap_paths)} heatmaps files do not split evenly into {len(methods)} methods")
    per_method = len(heatmap_paths) // len(methods)
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write("method\thits\tlesion_images\thit_rate\n")
        for k, method in enumerate(methods):
            result = lesion_hit_rate(heatmap_paths[k * per_method : (k + 1) * per_method], mask_paths)
            out.write(f"{method}\t{result.hits}\t{result.total}\t{result.rate:.4f}\n")


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of a 1D array, ties given their average rank (as in Spearman's rho)."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps; NaN where either map is constant."""
    ra, rb = rank(np.ravel(a)), rank(np.ravel(b))
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def randomized_copy(model, seed: int):
    """A copy of ``model`` with every weight drawn afresh from its initializer (Adebayo et al. 2018)."""
    import keras

    keras.utils.set_random_seed(seed)
    copy = keras.models.clone_model(model)
    return copy


def randomization_correlations(
    model, random_model, method: str, params: dict, inputs: np.ndarray, classes: np.ndarray
) -> np.ndarray:
    """Per-image Spearman correlation between the maps of the trained and the randomized model."""
    from xaipipe import methods

    trained = methods.create(method, model, **params).explain(inputs, classes)[1]
    randomized = methods.create(method, random_model, **params).explain(inputs, classes)[1]
    return np.array([spearman(t, r) for t, r in zip(trained[:, 0], randomized[:, 0], strict=True)])


RANDOMIZATION_HEADER = "method\timages\tmean_spearman\tconstant_maps\n"


def write_randomization_row(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    method: str,
    params: dict,
    n_samples: int,
    seed: int,
    out_path: str | os.PathLike,
) -> None:
    """Model-parameter randomization test (Adebayo et al. 2018) of one method on the first samples.

    Writes the mean Spearman rank correlation between each image's map from the
    trained model and from a randomly re-initialized copy (low: the map depends on
    what the model learned), and how many images gave a constant map (left out of the mean).
    Samples skipped before (``on_error: skip``) are left out of the first ``n_samples``.
    """
    from xaipipe.model import load_model, sha256_file
    from xaipipe.stages import check_predictions_model

    predictions = h5store.read_predictions(predictions_path)
    check_predictions_model(predictions, predictions_path, model_path, sha256_file(model_path))
    model = load_model(model_path)
    rows = np.flatnonzero(~predictions.skipped)[:n_samples]
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        inputs = shard.inputs(slice(n_samples)) if rows.tolist() == list(range(n_samples)) else shard.inputs(rows)
    classes = predictions.predicted[rows, None]
    rho = randomization_correlations(model, randomized_copy(model, seed), method, params, inputs, classes)
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write(RANDOMIZATION_HEADER)
        out.write(f"{method}\t{len(rho)}\t{np.nanmean(rho):.4f}\t{int(np.isnan(rho).sum())}\n")


def concatenate_tables(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> None:
    """Concatenate tab-separated tables that share one header line."""
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        for k, path in enumerate(paths):
            lines = Path(path).read_text().splitlines(keepends=True)
            out.writelines(lines if k == 0 else lines[1:])
