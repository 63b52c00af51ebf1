"""The evaluation stage: how far to trust each method's maps on the study's own data.

Per map (sample x method x target class), from the cached inputs, predictions and maps:

- faithfulness (the model only): ``deletion`` and ``insertion`` (areas under the curves of
  :mod:`xaipipe.faithfulness`; with ``replacement: road`` their copies are imputed as ROAD
  does), ``road_morf`` and ``road_lerf``;
- localization (ground-truth masks): ``pointing_game``, ``relevance_mass``,
  ``relevance_rank``, ``roc_auc`` (:mod:`xaipipe.metrics`), for samples whose mask has a
  region (an all-zero mask, a sample without a lesion, gives none);
- complexity: ``sparseness`` and ``complexity``.

Per method, on ``sanity_samples`` samples: the cascading model-parameter randomization test
(``randomization``: Spearman, ``randomization_ssim``: SSIM, between the trained model's map
and the map once every layer is randomized; each stage of the cascade in the method's
table). Across methods: their agreement (Spearman) on the same sample and class.

Maps are the normalized ones (what is rendered: in [0, 1], or [-1, 1] for a method with
``normalize: signed``; :mod:`xaipipe.metrics` says what each metric does with negative
values, and the faithfulness curves rank by value, most positive first, so that MoRF
removes the strongest evidence for the class and LeRF the strongest against it first);
maps of skipped samples (NaN, class -1)
are left out, as are the values a metric leaves undefined (NaN: a constant map's
correlation, say). The summary gives each metric's mean over the maps with a percentile
bootstrap interval, in long form (``SUMMARY_HEADER``).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xaipipe import h5store, metrics
from xaipipe.atomic import atomic_path
from xaipipe.errors import Issue, SampleError, check_policy
from xaipipe.logs import progress
from xaipipe.samples import JPEG_EXTENSIONS

if TYPE_CHECKING:
    from xaipipe.geometry import Geometry

log = logging.getLogger(__name__)

# --- the metrics and what they need --------------------------------------------------------

#: Every metric, in the summary's order, with the data it needs: the model, masks, or the maps alone.
METRICS: dict[str, str] = {
    "deletion": "model",
    "insertion": "model",
    "road_morf": "model",
    "road_lerf": "model",
    "pointing_game": "masks",
    "relevance_mass": "masks",
    "relevance_rank": "masks",
    "roc_auc": "masks",
    "sparseness": "maps",
    "complexity": "maps",
    "randomization": "model",
    "randomization_ssim": "model",
}
#: The metrics that are a curve per map (their value: the area under it).
CURVES = ("deletion", "insertion", "road_morf", "road_lerf")
LOCALIZATION = tuple(name for name, needs in METRICS.items() if needs == "masks")
RANDOMIZATION = ("randomization", "randomization_ssim")
#: The metrics of the per-shard files (the randomization test has its own job per method).
PER_MAP = tuple(name for name in METRICS if name not in RANDOMIZATION)
#: The score of the faithfulness curves: the target class's probability, as in the RISE paper.
CURVE_SCORE = "probabilities"
#: Noise of ROAD's imputation (Rong et al. 2022's default).
ROAD_NOISE = 0.01
#: Perturbed copies per model call of the faithfulness curves.
COPIES_PER_CALL = 256
#: Seed of the randomly initialized model of the randomization test.
RANDOMIZATION_SEED = 0


def select_metrics(requested: Sequence[str] | None, has_masks: bool) -> list[str]:
    """The metrics to compute, in :data:`METRICS` order: ``requested`` (None: all the data allows).

    ValueError naming the config key: an unknown metric, or a localization metric without masks.
    """
    if requested is None:
        return [name for name, needs in METRICS.items() if has_masks or needs != "masks"]
    unknown = [name for name in requested if name not in METRICS]
    if unknown:
        raise ValueError(f"config key evaluation.metrics: unknown metric {unknown[0]!r}; valid: {', '.join(METRICS)}")
    without = [name for name in requested if METRICS[name] == "masks" and not has_masks]
    if without:
        raise ValueError(
            f"config key evaluation.metrics: {', '.join(without)} need{'s' if len(without) == 1 else ''} ground-truth "
            "masks; set data.masks "
            "(a folder that mirrors the sample ids) or data.mask_column (a column of mask paths in the "
            "sample table), or leave these metrics out"
        )
    return [name for name in METRICS if name in requested]


#: The revision of the per-map metrics' definitions, among the per-shard job's params so that a study evaluated by
#: an earlier xaipipe is evaluated again, not summarized from its old files: 2 (Sun Nov 29 2026), the faithfulness
#: curves' ties in a fixed random order (:func:`xaipipe.faithfulness.tie_order`) and blank maps' sparseness and
#: complexity those of a constant map (0 and ln n), where C order and NaN were.
DEFINITIONS = 2


@dataclass(frozen=True)
class Settings:
    """The ``evaluation`` config section, checked (see the schema for each key)."""

    metrics: tuple[str, ...]
    steps: int = 20
    replacement: str | float = "blur"
    pointing_tolerance: int = 0
    sanity_samples: int = 16
    sanity_stages: int = 4
    bootstrap_samples: int = 1000
    bootstrap_seed: int = 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any], has_masks: bool) -> Settings:
        from xaipipe.faithfulness import check_replacement, check_steps

        replacement = section["replacement"]
        if replacement != "road":
            try:
                replacement = check_replacement(replacement)
            except ValueError as error:
                raise ValueError(f"config key evaluation.replacement: {error}") from None
        return cls(
            metrics=tuple(select_metrics(section["metrics"], has_masks)),
            steps=check_steps(section["steps"]),
            replacement=replacement,
            pointing_tolerance=int(section["pointing_tolerance"]),
            sanity_samples=int(section["sanity_samples"]),
            sanity_stages=int(section["sanity_stages"]),
            bootstrap_samples=int(section["bootstrap"]["samples"]),
            bootstrap_seed=int(section["bootstrap"]["seed"]),
        )

    @property
    def per_map(self) -> tuple[str, ...]:
        return tuple(name for name in self.metrics if name in PER_MAP)

    @property
    def randomization(self) -> bool:
        return any(name in RANDOMIZATION for name in self.metrics)

    @property
    def localization(self) -> bool:
        return any(name in LOCALIZATION for name in self.metrics)

    def summary_params(self) -> dict[str, Any]:
        """What the summary depends on."""
        return {
            "metrics": list(self.metrics),
            "bootstrap_samples": self.bootstrap_samples,
            "bootstrap_seed": self.bootstrap_seed,
        }

    def shard_params(self) -> dict[str, Any]:
        """What the per-shard job depends on (a change reruns it), with :data:`DEFINITIONS`."""
        return {
            "definitions": DEFINITIONS,
            "metrics": list(self.per_map),
            "steps": self.steps,
            "replacement": self.replacement,
            "pointing_tolerance": self.pointing_tolerance,
        }


def is_road_curve(name: str, settings: Settings) -> bool:
    """Whether the curve ``name`` imputes its copies as ROAD does (a CPU solve per copy)."""
    return name in ("road_morf", "road_lerf") or (name in ("deletion", "insertion") and settings.replacement == "road")


def plot_names(settings: Settings, n_methods: int) -> list[str]:
    """The plots the settings give: ``curves`` (with a curve metric), ``metrics``, ``agreement`` (two methods or more)."""
    if not settings.metrics:
        return []
    names = ["curves"] if any(name in CURVES for name in settings.metrics) else []
    return names + ["metrics"] + (["agreement"] if n_methods >= 2 else [])


# --- masks --------------------------------------------------------------------------------


def mask_paths(config: Mapping[str, Any], ids: Sequence[str]) -> list[str | None]:
    """Each sample's mask file from ``data.masks`` or ``data.mask_column``, None where it has none.

    ``data.masks``: the file ``{data.masks}/{sample id}``, or else the one file there with the
    id's name and another supported extension (``case1.jpg`` -> ``case1.png``); a sample with
    neither has no mask. ``data.mask_column``: the column of the CSV sample table, paths
    relative to the table's folder (an empty cell: no mask). Missing files named in the
    column are returned as they are, for the evaluation job to report under ``on_error``.
    """
    from xaipipe.samples import SAMPLE_EXTENSIONS

    data = config["data"]
    if data.get("mask_column"):
        table = data["samples"]
        if not table or not str(table).lower().endswith(".csv"):
            raise ValueError("config key data.mask_column: needs a CSV sample table (data.samples)")
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if data["mask_column"] not in (reader.fieldnames or []):
                raise ValueError(
                    f"config key data.mask_column: {table} has no column {data['mask_column']!r}; "
                    f"columns: {reader.fieldnames}"
                )
            cells = {(row[data["id_column"]] or "").strip(): (row[data["mask_column"]] or "").strip() for row in reader}
        folder = Path(table).parent
        return [str(folder / cells[i]) if cells.get(i) else None for i in ids]
    root = data.get("masks")
    if not root:
        return [None] * len(ids)
    if not os.path.isdir(root):
        raise ValueError(f"config key data.masks: {root} is no folder; point it at the folder of the masks")
    found: dict[str, str] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            found[relative] = relative
            lower = relative.lower()
            for extension in SAMPLE_EXTENSIONS:
                if lower.endswith(extension):
                    found.setdefault(f"stem:{relative[: -len(extension)]}", relative)
    paths: list[str | None] = []
    for sample_id in ids:
        stem = sample_id
        for extension in SAMPLE_EXTENSIONS:
            if sample_id.lower().endswith(extension):
                stem = sample_id[: -len(extension)]
                break
        relative = found.get(sample_id) or found.get(f"stem:{stem}")
        paths.append(f"{root}/{relative}" if relative else None)
    return paths


#: Mask formats whose compression may leave noise around the region (JPEG, lossy WebP and JPEG 2000).
LOSSY_EXTENSIONS = (*JPEG_EXTENSIONS, ".webp", ".jp2")


def load_mask(path: str | os.PathLike, spatial_dims: int) -> tuple[np.ndarray, Geometry | None]:
    """A ground-truth mask as a bool array (*spatial): True where any channel is non-zero; with its grid where the
    file has one (NIfTI, MetaImage, DICOM), else None. In a lossily compressed file (:data:`LOSSY_EXTENSIONS`)
    True where a channel exceeds half the mask's largest value: JPEG's noise around a 0/255 region (values of
    1-40) made a 64-pixel region 96.

    The formats of the samples (:func:`xaipipe.readers.load_sample`). ValueError naming the
    file: missing, empty, unreadable, or of another dimensionality.
    """
    from xaipipe.readers import load_sample

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"mask {path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"mask {path}: the file is empty")
    try:
        array, geometry = load_sample(path, spatial_dims)
    except (OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"mask {path}: unreadable ({error})") from None
    array = np.asarray(array)
    lossy = path.name.lower().endswith(LOSSY_EXTENSIONS)
    if array.ndim == spatial_dims + 1:
        array = array.max(axis=-1) if lossy else np.any(array != 0, axis=-1)
    if array.ndim != spatial_dims:
        raise ValueError(f"mask {path}: shape {array.shape} is no {spatial_dims}D mask")
    if path.name.lower().endswith(".npy"):  # a grid made up (ones, zeros, identity), not the mask's
        geometry = None
    if lossy:  # compression noise around the region is no region
        return array > array.max() / 2, geometry
    return array != 0, geometry


# --- the per-shard stage ----------------------------------------------------------------------


def evaluate_shard(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    heatmaps_path: str | os.PathLike,
    model_path: str | os.PathLike | None,
    out_path: str | os.PathLike,
    settings: Mapping[str, Any],
    masks: Sequence[str | None] | None = None,
    on_error: str = "fail",
    batch_size: int = 32,
) -> None:
    """Evaluate one method's maps of one shard (``settings``: :meth:`Settings.shard_params`).

    ``masks``: each sample's mask file (None: no mask), needed for the localization
    metrics. A mask that is missing, empty or unreadable raises a SampleError naming the
    sample and the file (``on_error: fail``), or leaves the sample out of localization
    with a warning (``skip``); a mask is cropped or padded as its image was; one of another shape is resized to the map
    (nearest neighbour) with a warning.
    """
    from xaipipe.faithfulness import area, fractions  # imports Keras: not at parse time

    check_policy(on_error)
    wanted = tuple(settings["metrics"])
    unknown = [name for name in wanted if name not in PER_MAP]
    if unknown:
        raise ValueError(f"unknown per-map metrics {unknown}; valid: {PER_MAP}")
    steps = int(settings["steps"])
    with h5store.HeatmapsFile.open(heatmaps_path) as maps:
        ids, sample_index, class_index = maps.ids, maps.sample_index, maps.class_index
        skipped = maps.skipped
        method = str(maps.file.attrs.get("variant", maps.file.attrs.get("method", "")))
        model_sha256 = maps.file.attrs.get("model_sha256")
        n_maps, map_shape = len(maps), maps.map_shape
    valid = (class_index >= 0) & ~skipped[sample_index] if n_maps else np.zeros(0, bool)
    values = {name: np.full(n_maps, np.nan) for name in wanted}
    curves = {name: np.full((n_maps, steps + 1), np.nan) for name in wanted if name in CURVES}
    record = h5store.SkipRecord(len(ids))
    stage = f"evaluate:{method}"
    localized = [name for name in wanted if name in LOCALIZATION]
    regions = _mask_regions(preprocessed_path, ids, masks, localized, map_shape, skipped, on_error, stage, record)
    modelled = [name for name in wanted if name in CURVES]
    scorer = None
    if modelled and valid.any():
        from xaipipe.model import sha256_file
        from xaipipe.stages import check_predictions_model

        check_predictions_model(
            h5store.read_predictions(predictions_path), predictions_path, model_path, sha256_file(model_path)
        )
        scorer = _Faithfulness(model_path, settings, modelled)
    rows = np.flatnonzero(valid)
    with h5store.PreprocessedShard.open(preprocessed_path) as shard, h5store.HeatmapsFile.open(heatmaps_path) as hm:
        localizes = _localized_maps(shard.labels, sample_index, class_index) if regions else None
        batches = [rows[k : k + batch_size] for k in range(0, len(rows), batch_size)]
        for batch in progress(batches, f"evaluate {method}", len(batches), "batch"):
            heat = np.stack([hm.normalized(int(m)) for m in batch]).astype(np.float64)
            for m, heatmap in zip(batch, heat, strict=True):
                _complexity(values, m, heatmap)
                region = regions.get(int(sample_index[m]))
                if region is not None and localizes[m]:
                    _localize(values, m, heatmap, region, int(settings["pointing_tolerance"]))
            if scorer is not None:
                samples = sample_index[batch]
                unique, position = np.unique(samples, return_inverse=True)
                inputs = shard.inputs(unique)[position]
                for name, curve in scorer(inputs, heat, class_index[batch]).items():
                    curves[name][batch] = curve
                    values[name][batch] = area(curve)

    h5store.write_evaluation(
        out_path,
        ids,
        sample_index,
        class_index,
        fractions(steps),
        values,
        curves,
        record,
        mask_sha256=_mask_hashes(masks) if localized else None,
        method=method,
        settings=dict(settings),
        model_sha256=model_sha256 or "",
    )


def _mask_hashes(masks: Sequence[str | None] | None) -> list[str]:
    """Each sample's mask content hash ("" where it has none, or none is there): the record by which a run tells a
    mask replaced by other content, whatever its date (:func:`xaipipe.caches.forget_changed_masks`)."""
    from xaipipe.caches import content_sha256

    return [content_sha256(path) if path is not None and os.path.exists(path) else "" for path in masks or []]


def _localized_maps(labels: np.ndarray, sample_index: np.ndarray, class_index: np.ndarray) -> np.ndarray:
    """Which maps meet their sample's mask: a sample's one map (its predicted or labelled class), and of a sample
    with a map per class (``targets: all``) the map of its label's class only, as its mask outlines what makes it
    that class; every map of a sample without a label (-1 in ``labels``, the shard's)."""
    labels = np.asarray(labels)
    sample_index = np.asarray(sample_index, np.intp)
    per_sample = np.bincount(sample_index, minlength=len(labels))
    label = labels[sample_index]
    return (per_sample[sample_index] == 1) | (label < 0) | (np.asarray(class_index) == label)


def _complexity(values: dict[str, np.ndarray], m: int, heatmap: np.ndarray) -> None:
    """Sparseness and complexity of one map. A blank map (all zero: nothing at all, or no positive evidence in a
    ``positive`` normalization) is scored as the constant map it is the limit of, the least sparse and most complex
    there is: sparseness 0 (as Quantus's ``Sparseness``, whose 1e-7 offset gives it) and complexity ln(n), not the
    formulas' NaN, which left it out and ranked a method that goes blank on its hard cases on its easy ones alone
    (n 15 against the others' 24)."""
    blank = not np.any(heatmap)
    if "sparseness" in values:
        values["sparseness"][m] = 0.0 if blank else metrics.sparseness(heatmap)
    if "complexity" in values:
        values["complexity"][m] = math.log(heatmap.size) if blank else metrics.complexity(heatmap)


def _localize(values: dict[str, np.ndarray], m: int, heatmap: np.ndarray, region: np.ndarray, tolerance: int) -> None:
    """Each localization metric of one map.

    A map that points nowhere, constant (a blank one) or nowhere positive (a signed map of negative evidence only),
    misses: pointing game 0, not the hit that every tied peak inside the mask would make it, nor NaN, which left
    it out and ranked a method that goes blank on hard cases on its easy ones alone. A map without positive
    relevance puts none of it in the mask: relevance mass 0 (the formula's 0/0)."""
    nowhere = heatmap.size == 0 or heatmap.max() <= 0
    if "pointing_game" in values:
        blank = nowhere or heatmap.max() == heatmap.min()
        values["pointing_game"][m] = 0.0 if blank else float(metrics.pointing_game(heatmap, region, tolerance))
    if "relevance_mass" in values:
        values["relevance_mass"][m] = 0.0 if nowhere else metrics.relevance_mass(heatmap, region)
    if "relevance_rank" in values:
        values["relevance_rank"][m] = metrics.relevance_rank(heatmap, region)
    if "roc_auc" in values and not region.all():
        values["roc_auc"][m] = metrics.roc_auc(heatmap, region)


def window_of(mask: np.ndarray, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """The part of ``mask`` in the window of ``shape`` whose pixel 0 is ``mask``'s pixel ``start`` (negative where
    padded), False outside ``mask``: a crop or a padding applied to it."""
    out = np.zeros(tuple(shape), bool)
    src = tuple(slice(max(s, 0), min(s + n, m)) for s, n, m in zip(start, shape, mask.shape))
    dst = tuple(slice(sl.start - s, sl.stop - s) for sl, s in zip(src, start))
    if all(sl.stop > sl.start for sl in src):
        out[dst] = mask[src]
    return out


#: The least share of a volume's mask voxels whose centres must lie within its image once placed in world
#: coordinates: less, and the mask's header (affine, origin, direction) likely is not its image's.
MASK_KEPT = 0.9


def _mask_outside(path: str, kept: float) -> str:
    where = "none" if kept == 0 else f"only {kept:.0%}"
    return (
        f"mask {path}: {where} of its region lies within the image, as the maps see it, once placed by its header "
        "in world coordinates: the mask's affine, origin or direction differ from the image's (check that it was "
        "saved with its image's header, nibabel: nib.Nifti1Image(mask, image.affine)), or preprocessing's crop cut "
        "it off" + ("; left out of localization" if kept == 0 else "")
    )


def _mask_held(path: str, held: np.ndarray, where: str) -> str:
    return (
        f"mask {path}: its region is smaller than a voxel of {where}, which nearest-neighbour resampling left "
        f"without it; it counts as the {np.count_nonzero(held)} voxel(s) that hold its voxels' centres"
    )


def _held_voxels(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The voxels of a grid of ``shape`` over the same extent as ``mask`` that hold the centre of one of its
    voxels (pixel-centre alignment, as :func:`xaipipe.metrics.resize_mask`): a region smaller than an output
    voxel, which nearest neighbour misses, keeps the voxels it lies in."""
    out = np.zeros(shape, bool)
    found = np.nonzero(mask)
    out[tuple(np.minimum(((i + 0.5) * m / n).astype(np.int64), m - 1) for i, n, m in zip(found, mask.shape, shape))] = 1
    return out


#: The most mask voxels :func:`_held_voxels_in_world` places to measure the share within the maps' grid (evenly
#: spaced among them): a large organ's segmentation has millions.
SHARE_SAMPLE = 100_000


def _held_voxels_in_world(
    mask: np.ndarray, grid, target, shape: tuple[int, ...], most: int | None = SHARE_SAMPLE
) -> tuple[np.ndarray, float]:
    """(the voxels of the grid ``target`` of ``shape`` that hold the world position of one of ``mask``'s voxel
    centres, the share of its voxels whose centre lies within that grid): where a mask's region lies, whatever
    resampling then makes of its volume (a coarser grid halves or doubles its voxel count, which is no sign of a
    header that differs). ``most``: place at most this many voxels, evenly spaced (the share is then measured on
    them, and the held voxels are theirs); None: all."""
    found = np.array(np.nonzero(mask), np.float64)  # (3, N): z, y, x
    if not found.size:
        return np.zeros(shape, bool), 1.0
    if most is not None and found.shape[1] > most:
        found = found[:, np.linspace(0, found.shape[1] - 1, most).astype(np.int64)]
    index = np.rint(target.world_to_index(grid.index_to_world(found))).astype(np.int64)  # z, y, x
    inside = np.all((index >= 0) & (index < np.asarray(shape)[:, None]), axis=0)
    held = np.zeros(shape, bool)
    held[tuple(index[:, inside])] = True
    return held, float(inside.mean())


def _mask_regions(
    preprocessed_path, ids, masks, localized, map_shape, skipped, on_error, stage, record
) -> dict[int, np.ndarray]:
    """Row -> the mask resized to the map, for the samples whose mask has a region.

    A volume's mask with a grid of its own (NIfTI, MetaImage, DICOM) is resampled onto the maps' grid in world
    coordinates (nearest neighbour), whatever its extent, voxel order or the crop of its image (unless the image
    is an ``.npy`` array, whose grid is made up, and the mask of its shape: voxel for voxel). Any other mask
    lies on its source image's grid: where a crop or padding made the overlay image, the mask is
    cropped or padded the same way (:func:`window_of`). Where a volume's maps lie on
    another grid (``preprocessing.orientation``, ``spacing``: the model's), the mask is
    first resampled onto that grid (nearest neighbour, in world coordinates), so that
    mask and map meet voxel for voxel whatever the reorientation.
    """
    if not localized:
        return {}
    from xaipipe.geometry import Geometry, resample_onto
    from xaipipe.geometry import equal as geometry_equal

    if masks is None or len(masks) != len(ids):
        raise ValueError(f"the localization metrics need one mask path (or None) per sample, got {masks!r}")
    regions: dict[int, np.ndarray] = {}
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        spatial_dims = shard.spatial_dims
        for row, (sample_id, path) in enumerate(zip(ids, masks, strict=True)):
            if path is None or skipped[row]:
                continue
            try:
                mask, mask_grid = load_mask(path, spatial_dims)
            except ValueError as error:
                if on_error == "fail":
                    raise SampleError(sample_id, f"{error}; fix or remove the mask", stage) from None
                record.warn(Issue(sample_id, stage, "warning", f"{error}; left out of localization"))
                continue
            image_shape = tuple(shard.overlay_image(row).shape[:spatial_dims])
            made_up = geometry_equal(shard.geometry(row), Geometry())  # an .npy volume's: voxel for voxel
            if mask_grid is not None and not (made_up and mask.shape == image_shape):
                # a volume's mask with its grid: onto the maps' grid, in world coordinates
                target, shape = shard.map_grid(row) or (shard.geometry(row), image_shape)
                if mask.shape != tuple(shape) or not geometry_equal(mask_grid, target):
                    region = mask
                    held, kept = _held_voxels_in_world(mask, mask_grid, target, tuple(shape))
                    mask = resample_onto(mask.astype(np.uint8), mask_grid, target, shape, interpolation="nearest") > 0
                    if kept < MASK_KEPT:
                        record.warn(Issue(sample_id, stage, "warning", _mask_outside(path, kept)))
                    if held.any() and not mask.any():  # a small region: every voxel of it placed
                        held = _held_voxels_in_world(region, mask_grid, target, tuple(shape), None)[0]
                        record.warn(Issue(sample_id, stage, "warning", _mask_held(path, held, "the maps' grid")))
                        mask = held
            else:
                window = shard.source_window(row)
                if mask.shape != image_shape and window is not None and mask.shape == window[0]:
                    mask = window_of(mask, window[1], image_shape)  # a mask of the source, cut as its image was
                if mask.shape != image_shape and sorted(mask.shape) == sorted(image_shape):
                    reason = (
                        f"mask {path}: shape {mask.shape} is the image's {image_shape} with its axes in another order "
                        "(an array saved in nibabel's (x, y, z) order?); arrays are (z, y, x) here as the image's: "
                        "save the mask transposed (mask.transpose()); left out of localization"
                    )
                    record.warn(Issue(sample_id, stage, "warning", reason))
                    continue
                if mask.shape != image_shape:
                    reason = (
                        f"mask {path}: shape {mask.shape} differs from the image's {image_shape}; resized to the map's"
                    )
                    record.warn(Issue(sample_id, stage, "warning", reason))
                map_grid = shard.map_grid(row) if spatial_dims == 3 and mask.shape == image_shape else None
                if map_grid is not None:  # the maps lie on the model's grid (reoriented, resampled): the mask there
                    grid = shard.geometry(row)
                    mask = resample_onto(mask.astype(np.uint8), grid, *map_grid, interpolation="nearest") > 0
            if mask.any():
                resized = metrics.resize_mask(mask, tuple(map_shape))
                if not resized.any():
                    resized = _held_voxels(mask, tuple(map_shape))
                    record.warn(Issue(sample_id, stage, "warning", _mask_held(path, resized, "the maps")))
                if resized.any():
                    regions[row] = resized
    return regions


class _Faithfulness:
    """The faithfulness curves of a batch of maps, the model loaded once."""

    def __init__(self, model_path, settings: Mapping[str, Any], names: Sequence[str]):
        from xaipipe.autodiff import Scores
        from xaipipe.faithfulness import DeletionInsertion
        from xaipipe.model import load_model

        self.model = load_model(model_path)
        self.names = tuple(names)
        self.steps = int(settings["steps"])
        self.replacement = settings["replacement"]
        self.scores = Scores(self.model, CURVE_SCORE)
        plain = [n for n in ("deletion", "insertion") if n in self.names and self.replacement != "road"]
        self.plain = plain
        self.deletion_insertion = (
            DeletionInsertion(self.model, CURVE_SCORE, self.steps, self.replacement, COPIES_PER_CALL) if plain else None
        )
        # ROAD's orders for each curve: deletion and insertion with replacement road, and ROAD's own
        self.road = {"road_morf": "morf", "road_lerf": "lerf"}
        if self.replacement == "road":
            self.road.update({"deletion": "morf", "insertion": "insertion"})
        self.road = {name: order for name, order in self.road.items() if name in self.names}

    def __call__(self, inputs: np.ndarray, maps: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
        from xaipipe.faithfulness import road_curves

        out: dict[str, np.ndarray] = {}
        if self.deletion_insertion is not None:
            out.update(self.deletion_insertion.curves(inputs, maps, classes, self.plain))
        if self.road:
            orders = tuple(dict.fromkeys(self.road.values()))
            found = road_curves(
                self.model, inputs, maps, classes, CURVE_SCORE, self.steps, ROAD_NOISE,
                chunk_size=COPIES_PER_CALL, orders=orders, scores=self.scores,
            )  # fmt: skip
            out.update({name: found[order] for name, order in self.road.items()})
        return out


# --- the randomization test ---------------------------------------------------------------


def weighted_layers(model) -> list:
    """The layers that hold weights, nested models opened, in the model's order (input first)."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            found += weighted_layers(layer)
        elif layer.weights:
            found.append(layer)
    return found


def cascade_cuts(n_layers: int, stages: int) -> list[int]:
    """How many of the top layers each stage of the cascade randomizes: ``stages`` counts spread
    evenly over 1 .. ``n_layers`` (every layer when there are no more), the last one all of them."""
    if n_layers < 1:
        raise ValueError("the model has no layer with weights to randomize")
    if n_layers <= stages:
        return list(range(1, n_layers + 1))
    if stages == 1:
        return [n_layers]
    return sorted({int(round(c)) for c in np.linspace(1, n_layers, stages)})


def randomized_copy(model, seed: int):
    """A copy of ``model`` with every weight drawn afresh from its initializer (Adebayo et al. 2018)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def randomization_spearman(trained: np.ndarray, randomized: np.ndarray) -> float:
    """Spearman's rho of a trained model's map and a randomized model's: NaN where the trained map
    is constant (nothing to compare), 0 where only the randomized one is (it keeps no ranking of
    the pixels, so none of the trained map's: the map did change)."""
    if np.ptp(trained) == 0:
        return float("nan")
    if np.ptp(randomized) == 0:
        return 0.0
    return metrics.spearman(trained, randomized)


RANDOMIZATION_HEADER = "method\tstage\trandomized_layers\tdown_to\tsample\tclass\tspearman\tssim\n"


def spread_rows(total: int, n: int) -> np.ndarray:
    """``n`` of ``total`` positions (all where ``total <= n``), evenly spaced from the first to the last, ascending."""
    return np.round(np.linspace(0, total - 1, min(n, total))).astype(np.int64) if total else np.zeros(0, np.int64)


def randomization_table(
    preprocessed_paths: Sequence[str | os.PathLike],
    predictions_paths: Sequence[str | os.PathLike],
    model_path: str | os.PathLike,
    method: str,
    params: dict,
    n_samples: int,
    stages: int,
    seed: int,
    out_path: str | os.PathLike,
) -> None:
    """The cascading model-parameter randomization test (Adebayo et al. 2018) of one method.

    ``n_samples`` samples that were not skipped, spread evenly over the study's order (:func:`spread_rows`; the first
    ones would all be one class where the samples are listed class by class), their predicted class as target.
    The layers with weights are randomized from the output down (each takes the weights of
    one randomly initialized copy of the model, seeded by ``seed``), in ``stages`` steps
    (:func:`cascade_cuts`), the last randomizing all of them; at each step, every sample's
    Spearman rank correlation (:func:`randomization_spearman`) and SSIM between the trained
    model's normalized map and the partly randomized model's, one row each (SSIM NaN where
    the map is too small for its 7-wide window).
    """
    from xaipipe import methods
    from xaipipe.model import load_model, sha256_file
    from xaipipe.stages import check_predictions_model

    digest = sha256_file(model_path)
    shards = []  # (preprocessed shard, its predictions, its rows not skipped)
    for preprocessed, predictions_path in zip(preprocessed_paths, predictions_paths, strict=True):
        predictions = h5store.read_predictions(predictions_path)
        check_predictions_model(predictions, predictions_path, model_path, digest)
        shards.append((preprocessed, predictions, np.flatnonzero(~predictions.skipped)))
    chosen = spread_rows(sum(len(usable) for *_, usable in shards), n_samples)
    inputs, classes, ids = [], [], []
    start = 0
    for preprocessed, predictions, usable in shards:
        rows = usable[chosen[(chosen >= start) & (chosen < start + len(usable))] - start]
        start += len(usable)
        if not len(rows):
            continue
        with h5store.PreprocessedShard.open(preprocessed) as shard:
            inputs.append(shard.inputs(rows))
        classes.append(predictions.predicted[rows])
        ids += [predictions.ids[r] for r in rows]
    if not ids:
        raise ValueError("the randomization test found no sample that was not skipped")
    x, target = np.concatenate(inputs), np.concatenate(classes)[:, None]
    model = load_model(model_path)
    explainer = methods.create(method, model, **params)
    trained = explainer.explain(x, target)[1][:, 0]
    data_range = 2.0 if explainer.signed else 1.0  # SSIM's: signed maps span [-1, 1]
    random_model = randomized_copy(model, seed)
    working = load_model(model_path)
    layers, random_layers = weighted_layers(working)[::-1], weighted_layers(random_model)[::-1]
    cuts = cascade_cuts(len(layers), stages)
    done = 0
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write(RANDOMIZATION_HEADER)
        for stage, cut in enumerate(progress(cuts, f"randomization {method}", unit="stage"), start=1):
            for layer, random_layer in zip(layers[done:cut], random_layers[done:cut], strict=True):
                layer.set_weights(random_layer.get_weights())
            done = cut
            randomized = methods.create(method, working, **params).explain(x, target)[1][:, 0]
            for sample_id, c, a, b in zip(ids, target[:, 0], trained, randomized, strict=True):
                rho = randomization_spearman(a, b)
                similarity = metrics.ssim(a, b, data_range) if min(a.shape) >= 7 else float("nan")
                out.write(f"{method}\t{stage}\t{cut}\t{layers[cut - 1].name}\t{sample_id}\t{c}\t{rho:.6f}\t{similarity:.6f}\n")


def read_table(path: str | os.PathLike) -> list[dict[str, str]]:
    """A header-first TSV as written here (no quoting: a field may hold quotes, as JSON does) as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


# --- agreement between methods ------------------------------------------------------------

AGREEMENT_HEADER = "method_a\tmethod_b\tmean_spearman\tn\n"


def agreement_table(
    methods_: Sequence[str], heatmap_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike
) -> None:
    """Mean Spearman correlation between every pair of methods over the maps of the same sample and class.

    ``heatmap_paths``: every method's heatmaps files, method by method in the order of
    ``methods_``, each with the same shards. Each map is ranked once; a pair's value leaves
    out maps that are skipped or constant.
    """
    k = len(methods_)
    if not k or len(heatmap_paths) % k:
        raise ValueError(f"{len(heatmap_paths)} heatmaps files do not split evenly into {k} methods")
    per_method = len(heatmap_paths) // k
    total = np.zeros((k, k))
    count = np.zeros((k, k), np.int64)
    for s in progress(range(per_method), "agreement", unit="shard"):
        ranked: list[dict[tuple[int, int], np.ndarray]] = []
        for a in range(k):
            with h5store.HeatmapsFile.open(heatmap_paths[a * per_method + s]) as maps:
                skipped, samples, classes = maps.skipped, maps.sample_index, maps.class_index
                found = {}
                for m in range(len(maps)):
                    if classes[m] < 0 or skipped[samples[m]]:
                        continue
                    r = metrics.centred_ranks(maps.normalized(m).astype(np.float64))
                    if r is not None:
                        found[(int(samples[m]), int(classes[m]))] = r
                ranked.append(found)
        for a in range(k):
            for b in range(a + 1, k):
                for key in ranked[a].keys() & ranked[b].keys():
                    total[a, b] += float(ranked[a][key] @ ranked[b][key])
                    count[a, b] += 1
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write(AGREEMENT_HEADER)
        for a in range(k):
            for b in range(a + 1, k):
                mean = total[a, b] / count[a, b] if count[a, b] else float("nan")
                out.write(f"{methods_[a]}\t{methods_[b]}\t{mean:.4f}\t{count[a, b]}\n")


def agreement_matrix(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(methods, symmetric matrix of mean Spearman with 1 on the diagonal, maps per pair) from agreement.tsv."""
    rows = read_table(path)
    names = list(dict.fromkeys([r["method_a"] for r in rows] + [r["method_b"] for r in rows]))
    index = {name: k for k, name in enumerate(names)}
    matrix = np.eye(len(names))
    counts = np.diag(np.full(len(names), np.nan))  # no count on the diagonal
    for r in rows:
        a, b = index[r["method_a"]], index[r["method_b"]]
        matrix[a, b] = matrix[b, a] = float(r["mean_spearman"])
        counts[a, b] = counts[b, a] = int(r["n"])
    return names, matrix, counts


# --- the summary ---------------------------------------------------------------------------

COMPARISON_HEADER = (
    "metric\tclass\tbetter\trank\tmodel\tvariant\tmethod\tmean\tci_low\tci_high\tn\twithin_ci_of_best\tranked_among\n"
)
SUMMARY_HEADER = "model\tvariant\tmethod\tclass\tmetric\tmean\tci_low\tci_high\tn\n"


#: Which value of each metric is better (curve kinds use the area under the curve).
BETTER: dict[str, str] = {
    "deletion": "lower",
    "insertion": "higher",
    "road_morf": "lower",
    "road_lerf": "higher",
    "pointing_game": "higher",
    "relevance_mass": "higher",
    "relevance_rank": "higher",
    "roc_auc": "higher",
    "sparseness": "higher",
    "complexity": "lower",
    "randomization": "nearer zero",  # a map that depends on the weights changes with them, either way
    "randomization_ssim": "lower",
}

#: Metrics whose values are areas under the model's own score curves, in its units (probabilities, or the raw
#: scores of a model without a softmax, above 1): they compare one model's variants, not models, so with several
#: models each model's variants are ranked among themselves (a logits model's insertion areas of 1.2-1.3 ranked
#: above every variant of a softmax model, by the scale of its scores).
MODEL_SCALE_METRICS = frozenset({"deletion", "insertion", "road_morf", "road_lerf"})


def comparison_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The variants of every model ranked per metric and class, best first (:data:`BETTER`).

    ``rows``: summary rows (:func:`read_summary`), each with its ``model``. ``within_ci_of_best``:
    the variant's 95% interval overlaps the best one's, so the data do not tell them apart
    (the best itself: yes). Equal means share a rank (1, 1, 3). A variant without a value (NaN: a class without
    masks, for localization) comes last, unranked, its ``within_ci_of_best`` empty (a "no" read as a judgement).
    ``ranked_among``:
    ``all models``, or ``its model`` for the :data:`MODEL_SCALE_METRICS` of a study of several models.
    """
    several = len({row["model"] for row in rows}) > 1
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        own = several and row["metric"] in MODEL_SCALE_METRICS
        groups.setdefault((row["metric"], row["class"], row["model"] if own else ""), []).append(row)
    out: list[dict[str, Any]] = []
    for (metric, label, own_model), members in groups.items():
        better = BETTER.get(metric, "higher")
        ranked = sorted(members, key=lambda r: (math.isnan(r["mean"]), _badness(r["mean"], better)))
        best_low, best_high = _judged_interval(ranked[0], better)
        badness = [_badness(r["mean"], better) for r in ranked if not math.isnan(r["mean"])]
        for row in ranked:
            valued = not math.isnan(row["mean"])
            position = 1 + sum(b < _badness(row["mean"], better) for b in badness)  # equal means share a rank
            low, high = _judged_interval(row, better)
            overlaps = valued and low <= best_high and best_low <= high
            out.append(
                {
                    "metric": metric,
                    "class": label,
                    "better": better,
                    "rank": position if valued else "",
                    **{key: row[key] for key in ("model", "variant", "method")},
                    **{key: row[key] for key in ("mean", "ci_low", "ci_high", "n")},
                    "within_ci_of_best": ("yes" if overlaps else "no") if valued else "",  # no value: no judgement
                    "ranked_among": "its model" if own_model else "all models",
                }
            )
    return out


def _judged_interval(row: Mapping[str, Any], better: str) -> tuple[float, float]:
    """The interval of what the rank judges: the mean's, or for ``nearer zero`` its distance from zero's (signed
    intervals of +0.10 [0.06, 0.14] and -0.12 [-0.16, -0.08] do not overlap, their distances [0.06, 0.14] and
    [0.08, 0.16] do)."""
    low, high = row["ci_low"], row["ci_high"]
    if better != "nearer zero":
        return low, high
    if low <= 0 <= high:
        return 0.0, max(-low, high)
    return min(abs(low), abs(high)), max(abs(low), abs(high))


def _badness(mean: float, better: str) -> float:
    if math.isnan(mean):
        return 0.0
    return {"higher": -mean, "lower": mean, "nearer zero": abs(mean)}[better]


def write_comparison(summaries: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> None:
    """``comparison.tsv``: :func:`comparison_rows` of every model's summary (their paths; each row names its model)."""
    rows = [row for path in summaries for row in read_summary(path)]
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write(COMPARISON_HEADER)
        for r in comparison_rows(rows):
            numbers = "\t".join(f"{r[key]:.4f}" for key in ("mean", "ci_low", "ci_high"))
            out.write(
                f"{r['metric']}\t{r['class']}\t{r['better']}\t{r['rank']}\t{r['model']}\t{r['variant']}\t{r['method']}"
                f"\t{numbers}"
                f"\t{r['n']}\t{r['within_ci_of_best']}\t{r['ranked_among']}\n"
            )


def bootstrap_interval(values: np.ndarray, samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement ``samples`` times)."""
    values = np.asarray(values, np.float64)
    if not len(values):
        return math.nan, math.nan
    if len(values) == 1 or samples < 1:
        return float(values.mean()), float(values.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    per_block = max(1, 2_000_000 // len(values))  # bounded memory for many maps
    for start in range(0, samples, per_block):
        n = min(per_block, samples - start)
        means[start : start + n] = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def summary_rows(
    methods_: Sequence[str] | Mapping[str, str],
    evaluation_paths: Sequence[str | os.PathLike],
    randomization_paths: Mapping[str, str | os.PathLike],
    settings: Mapping[str, Any],
    class_names: Sequence[str] | None = None,
    model: str = "model",
) -> list[dict[str, Any]]:
    """The summary's rows (see :data:`SUMMARY_HEADER`) of ``model``; per class where ``class_names`` is given.

    ``methods_``: the variants (labels), or a mapping label -> canonical method (a plain list:
    each label is its method's name). ``evaluation_paths``: every variant's evaluation files,
    variant by variant in the order of ``methods_``. ``randomization_paths``: label -> its
    randomization table (the cascade's last stage enters the summary).
    """
    method_of = dict(methods_) if isinstance(methods_, Mapping) else {label: label for label in methods_}
    wanted = list(settings["metrics"])
    k = len(methods_)
    if not k or len(evaluation_paths) % k:
        raise ValueError(f"{len(evaluation_paths)} evaluation files do not split evenly into {k} methods")
    per_method = len(evaluation_paths) // k
    rows: list[dict[str, Any]] = []
    for position, method in enumerate(methods_):
        gathered: dict[str, list[np.ndarray]] = {name: [] for name in wanted if name in PER_MAP}
        classes: list[np.ndarray] = []
        for path in evaluation_paths[position * per_method : (position + 1) * per_method]:
            found = h5store.EvaluationFile.read(path)
            for name in gathered:
                gathered[name].append(found.values[name])
            classes.append(found.class_index)
        values = {name: np.concatenate(v) if v else np.zeros(0) for name, v in gathered.items()}
        class_of = np.concatenate(classes) if classes else np.zeros(0, np.int32)
        random_classes = np.zeros(0, np.int32)
        if method in randomization_paths and any(name in RANDOMIZATION for name in wanted):
            table = read_table(randomization_paths[method])
            last = max(int(r["stage"]) for r in table) if table else 0
            final = [r for r in table if int(r["stage"]) == last]
            values["randomization"] = np.array([float(r["spearman"]) for r in final])
            values["randomization_ssim"] = np.array([float(r["ssim"]) for r in final])
            random_classes = np.array([int(r["class"]) for r in final], np.int32)
        groups = [("all", None)] if class_names is None else list(enumerate(class_names))
        for name in wanted:
            for group in groups:
                label, c = (group[0], None) if class_names is None else (group[1], group[0])
                data = values.get(name, np.zeros(0))
                if c is not None:
                    data = data[(random_classes if name in RANDOMIZATION else class_of) == c]
                data = data[np.isfinite(data)]
                low, high = bootstrap_interval(data, settings["bootstrap_samples"], settings["bootstrap_seed"])
                rows.append(
                    {
                        "model": model,
                        "variant": method,
                        "method": method_of[method],
                        "class": label,
                        "metric": name,
                        "mean": float(data.mean()) if len(data) else math.nan,
                        "ci_low": low,
                        "ci_high": high,
                        "n": int(len(data)),
                    }
                )
    return rows


def write_summary(rows: Sequence[Mapping[str, Any]], out_path: str | os.PathLike) -> None:
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        out.write(SUMMARY_HEADER)
        for r in rows:
            numbers = "\t".join(f"{r[key]:.4f}" for key in ("mean", "ci_low", "ci_high"))
            names = "\t".join(str(r[key]) for key in ("model", "variant", "method", "class", "metric"))
            out.write(f"{names}\t{numbers}\t{r['n']}\n")


def write_summary_of_run(
    methods_: Sequence[str] | Mapping[str, str],
    evaluation_paths: Sequence[str | os.PathLike],
    randomization_paths: Sequence[str | os.PathLike],
    settings: Mapping[str, Any],
    predictions_path: str | os.PathLike | None,
    out_path: str | os.PathLike,
    model: str = "model",
) -> None:
    """``summary.tsv`` of ``model``'s run: per class (their names from ``predictions_path``) where it is given,
    else ``all``.

    ``methods_``: as :func:`summary_rows`; ``randomization_paths``: one table per variant, in its order (or none).
    """
    class_names = None
    if predictions_path is not None:
        predictions = h5store.read_predictions(predictions_path)
        n_classes = predictions.probabilities.shape[1]
        names = list(predictions.class_names or [])
        class_names = names if len(names) == n_classes else [str(c) for c in range(n_classes)]
    tables = dict(zip(methods_, randomization_paths, strict=True)) if randomization_paths else {}
    write_summary(summary_rows(methods_, evaluation_paths, tables, settings, class_names, model), out_path)


def read_summary(path: str | os.PathLike) -> list[dict[str, Any]]:
    rows = read_table(path)
    return [
        {**r, **{key: float(r[key]) for key in ("mean", "ci_low", "ci_high")}, "n": int(r["n"])} for r in rows
    ]


def mean_curves(
    methods_: Sequence[str], evaluation_paths: Sequence[str | os.PathLike]
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, dict[str, int]]]:
    """(fractions, kind -> method -> mean curve over the maps, kind -> method -> maps) of the curve metrics."""
    per_method = len(evaluation_paths) // len(methods_)
    fractions = np.zeros(0)
    curves: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, dict[str, int]] = {}
    for position, method in enumerate(methods_):
        sums: dict[str, np.ndarray] = {}
        n: dict[str, int] = {}
        for path in evaluation_paths[position * per_method : (position + 1) * per_method]:
            found = h5store.EvaluationFile.read(path)
            fractions = found.fractions
            for kind, curve in found.curves.items():
                ok = np.isfinite(curve).all(axis=1)
                sums[kind] = sums.get(kind, 0) + curve[ok].sum(axis=0)
                n[kind] = n.get(kind, 0) + int(ok.sum())
        for kind in CURVES:
            if kind in sums and n[kind]:
                curves.setdefault(kind, {})[method] = sums[kind] / n[kind]
                counts.setdefault(kind, {})[method] = n[kind]
    return fractions, curves, counts


def write_plots(
    methods_: Sequence[str],
    evaluation_paths: Sequence[str | os.PathLike],
    summary_path: str | os.PathLike,
    agreement_path: str | os.PathLike,
    out_stems: Mapping[str, str],
) -> None:
    """The evaluation's plots named in ``out_stems`` (name -> path without extension), each as PNG and SVG:
    ``curves`` (mean curve per method), ``metrics`` (means and intervals), ``agreement`` (the matrix)."""
    from xaipipe import plots

    if "curves" in out_stems:
        fractions, curves, counts = mean_curves(methods_, evaluation_paths)
        plots.curves_plot(fractions, curves, out_stems["curves"], counts)
    if "metrics" in out_stems:
        plots.metrics_plot(read_summary(summary_path), out_stems["metrics"])
    if "agreement" in out_stems:
        names, matrix, n = agreement_matrix(agreement_path)
        plots.agreement_plot(names, matrix, out_stems["agreement"], n)
