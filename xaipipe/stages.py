"""The pipeline's stages as plain functions: the Snakemake scripts only call these.

Each stage reads and writes one shard at a time, batch by batch, and writes its
output atomically.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xaipipe import h5store
from xaipipe.atomic import atomic_path
from xaipipe.drawing import overlay_base
from xaipipe.errors import SampleError
from xaipipe.logs import progress
from xaipipe.naming import extension_of
from xaipipe.preprocess import Preprocessing
from xaipipe.readers import load_sample
from xaipipe.writers import format_of_extension, write_map

log = logging.getLogger(__name__)


def preprocess_shard(
    paths: Sequence[str | os.PathLike],
    ids: Sequence[str],
    labels: Sequence[int] | None,
    class_names: Sequence[str] | None,
    preprocessing: Preprocessing,
    out_path: str | os.PathLike,
    preprocess_overlay: bool = True,
    first_index: int = 0,
) -> None:
    """Load the samples ``ids`` from their files ``paths`` and write their model inputs and overlay images.

    ``preprocess_overlay``: overlays are drawn on the image after the subfunctions
    (true) or on the untouched original (false). ``first_index`` is the position of
    the shard's first sample in the study (it seeds random subfunctions per sample).
    """
    if len(paths) != len(ids):
        raise ValueError(f"{len(paths)} sample files for {len(ids)} sample ids")
    labels = [-1] * len(ids) if labels is None else list(labels)
    dims = preprocessing.spatial_dims
    with h5store.preprocessed_writer(
        out_path,
        ids,
        labels,
        preprocessing.input_shape,
        spatial_dims=dims,
        class_names=list(class_names or []),
        preprocessing=preprocessing_record(preprocessing),
        preprocess_overlay=preprocess_overlay,
    ) as shard:
        for row, (sample_id, path) in enumerate(progress(list(zip(ids, paths)), "preprocess")):
            try:
                image, sample_spacing = load_sample(path, dims)
                processed = preprocessing.apply_subfunctions(image, first_index + row)
                inputs = preprocessing.finish(processed)
                base = processed if preprocess_overlay else image
            except ValueError as error:
                raise SampleError(sample_id, str(error), "preprocess") from None
            shard.write(row, inputs, overlay_base(base, dims), sample_spacing)


def preprocessing_record(preprocessing: Preprocessing) -> dict[str, Any]:
    """The preprocessing settings as plain data, for the HDF5 attributes."""
    record = {k: v for k, v in preprocessing.__dict__.items() if k != "subfunctions"}
    record["subfunctions"] = [{"name": type(step).__name__, **step.__dict__} for step in preprocessing.subfunctions]
    return record


def check_preprocessing(preprocessed_path: str | os.PathLike, preprocessing: Preprocessing) -> None:
    """ValueError naming the shard and each setting that differs, unless it was made with ``preprocessing``."""
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        recorded = shard.preprocessing
    expected = json.loads(json.dumps(preprocessing_record(preprocessing)))  # as the attribute stores it
    if recorded == expected:
        return
    differ = [
        f"{key}: {recorded.get(key)!r} there, {expected.get(key)!r} now"
        for key in sorted(set(recorded) | set(expected))
        if recorded.get(key) != expected.get(key)
    ]
    raise ValueError(
        f"{preprocessed_path} was made with other preprocessing settings than this job's ({'; '.join(differ)}): "
        f"rerun with --forcerun preprocess, or delete {preprocessed_path} and run again"
    )


def check_predictions_model(
    predictions: h5store.Predictions,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    model_sha256: str,
) -> None:
    """ValueError naming both files unless ``predictions`` were computed by the model with ``model_sha256``."""
    if predictions.model_sha256 != model_sha256:
        raise ValueError(
            f"{predictions_path} holds the predictions of another model (sha256 {str(predictions.model_sha256)[:12]}) "
            f"than {model_path} (sha256 {model_sha256[:12]}): rerun with --forcerun predict, or delete "
            f"{predictions_path} and run again"
        )


def predict_shard(
    preprocessed_path: str | os.PathLike,
    model_path: str | os.PathLike,
    out_path: str | os.PathLike,
    batch_size: int,
    preprocessing: Preprocessing | None = None,
) -> None:
    """Run the model on one preprocessed shard and cache the class scores.

    ``preprocessing``: the settings the shard must have been made with (the config's; a shard
    made otherwise is refused), or None to take the shard as it is.
    """
    from xaipipe.model import check_model_input, check_supported, load_model, predict_batch, sha256_file

    if preprocessing is not None:
        check_preprocessing(preprocessed_path, preprocessing)
    model = load_model(model_path)
    check_supported(model)
    with h5store.PreprocessedShard.open(preprocessed_path) as shard:
        check_model_input(model, model_path, shard.inputs(slice(0, 1)).shape[1:])
        shape = getattr(model, "output_shape", None)
        if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[-1], int):
            check_model_classes(model_path, shape[-1], shard.class_names, shard.labels, shard.ids)
        n_batches = -(-len(shard) // batch_size)
        scores = np.concatenate(
            [predict_batch(model, x) for _, x in progress(shard.batches(batch_size), "predict", n_batches, "batch")]
        )
        check_model_classes(model_path, scores.shape[1], shard.class_names, shard.labels, shard.ids)
        h5store.write_predictions(
            out_path,
            shard.ids,
            shard.labels,
            scores,
            class_names=shard.class_names,
            model_sha256=sha256_file(model_path),
            model_path=str(model_path),
        )


def check_model_classes(
    model_path: str | os.PathLike,
    n_outputs: int,
    class_names: Sequence[str],
    labels: Sequence[int],
    ids: Sequence[str],
) -> None:
    """ValueError naming the model file unless its ``n_outputs`` scores fit the classes and the labels.

    The classes, where known (config ``classes``, class subfolders, one-hot columns), must
    be as many as the outputs; a one-output (sigmoid) model has two classes. Every label
    (a class index; -1 for none) must be below that count.
    """
    n_classes = 2 if n_outputs == 1 else n_outputs
    if class_names and len(class_names) != n_classes:
        raise ValueError(
            f"model {model_path} has {n_outputs} outputs but the samples have {len(class_names)} classes "
            f"({', '.join(class_names)}); list the model's classes in its output order under `classes`, "
            "or use the model trained for these classes"
        )
    labels = np.asarray(labels)
    if labels.size and labels.max() >= n_classes:
        row = int(labels.argmax())
        raise ValueError(
            f"model {model_path} has {n_outputs} outputs (classes 0..{n_classes - 1}) but sample {ids[row]!r} "
            f"has label {int(labels[row])}; correct the label or use the model trained for these classes"
        )


def merge_predictions(paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> None:
    """Write one tab-separated table of all predictions (one row per sample)."""
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        header_written = False
        for path in paths:
            table = h5store.read_predictions(path)
            k = table.probabilities.shape[1]
            names = table.class_names if len(table.class_names) == k else [str(c) for c in range(k)]
            if not header_written:
                out.write("\t".join(["sample", "label", "predicted", *(f"p_{n}" for n in names)]) + "\n")
                header_written = True
            for sample_id, label, predicted, probs in zip(
                table.ids, table.labels, table.predicted, table.probabilities, strict=True
            ):
                label_name = names[label] if label >= 0 else ""
                cells = [sample_id, label_name, names[predicted], *(f"{p:.6f}" for p in probs)]
                out.write("\t".join(cells) + "\n")


def compute_heatmaps_shard(
    preprocessed_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    model_path: str | os.PathLike,
    method: str,
    method_params: dict[str, Any],
    targets: str,
    batch_size: int,
    out_path: str | os.PathLike,
    preprocessing: Preprocessing | None = None,
) -> None:
    """Compute one method's maps for every sample and target class of a shard.

    The predictions must be those of this model (their recorded sha256 is checked), and
    the shard made with ``preprocessing`` where it is given.
    """
    from xaipipe import methods
    from xaipipe.methods.base import target_classes
    from xaipipe.model import load_model, sha256_file

    if preprocessing is not None:
        check_preprocessing(preprocessed_path, preprocessing)
    predictions = h5store.read_predictions(predictions_path)
    model_sha256 = sha256_file(model_path)
    check_predictions_model(predictions, predictions_path, model_path, model_sha256)
    model = load_model(model_path)
    explainer = methods.create(method, model, **method_params)
    classes = target_classes(predictions.probabilities, targets, predictions.labels, predictions.ids)
    n, n_targets = classes.shape
    log.info("method %s, target layer %s, %d samples x %d targets", method, explainer.target_layer, n, n_targets)
    with h5store.PreprocessedShard.open(preprocessed_path) as shard, h5store.heatmaps_writer(
        out_path,
        shard.ids,
        n * n_targets,
        explainer.spatial_shape,
        method=methods.canonical_name(method),
        method_params={**method_params, **explainer.params},
        target_layer=explainer.target_layer,
        score_tensor=explainer.score_source,
        targets=targets,
        model_sha256=model_sha256,
        model_path=str(model_path),
    ) as heatmaps:
        n_batches = -(-n // batch_size)
        for rows, inputs in progress(shard.batches(batch_size), f"heatmaps {method}", n_batches, "batch"):
            raw, normalized = explainer.explain(inputs, classes[rows], ids=shard.ids[rows])
            maps = slice(rows.start * n_targets, rows.stop * n_targets)
            sample_index = np.repeat(np.arange(rows.start, rows.stop), n_targets)
            heatmaps.write(maps, sample_index, classes[rows].reshape(-1), raw, normalized)


def render_shard(
    preprocessed_path: str | os.PathLike,
    heatmaps_path: str | os.PathLike,
    out_paths: Sequence[str | os.PathLike],
    overlay: bool,
    alpha: float,
    colormap: str,
) -> None:
    """Write the maps of a heatmaps file, in their order, to ``out_paths``, at the overlay image's resolution.

    Each file's format follows from its extension (the workflow names the files).

    2D: PNG of the coloured map (blended over the image with ``overlay``) or the map as
    ``.npy``. Volumes: the map as NIfTI (with the sample's spacing) or ``.npy``, or an
    animated GIF of the slices drawn like the PNGs.
    """
    with h5store.PreprocessedShard.open(preprocessed_path) as shard, h5store.HeatmapsFile.open(heatmaps_path) as maps:
        dims = shard.spatial_dims
        sample_index = maps.sample_index
        if len(out_paths) != len(sample_index):
            raise ValueError(f"{heatmaps_path} holds {len(sample_index)} maps; {len(out_paths)} output files were asked for")
        for m, path in enumerate(progress(out_paths, "render", unit="map")):
            row = int(sample_index[m])
            image = shard.overlay_image(row)
            fmt = format_of_extension(extension_of(path), dims)
            write_map(path, maps.normalized(m), image, dims, fmt, overlay, alpha, colormap, shard.spacing(row))


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n")
